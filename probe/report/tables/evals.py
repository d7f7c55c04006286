"""Tables of the other evaluations: few-shot curves and k-NN scores, from their result files.

`python -m probe.table table=fewshot` reads every `{encoder}/{dataset}.fewshot.json` and
writes, per dataset, the mean and std over seeds for every shot count (md, csv) and a plot of
score against k on a log axis, one line per encoder with a band of one std (png).
`python -m probe.table table=knn` reads every `{encoder}/{dataset}.knn.json` and writes
datasets x encoders: the test score at the k chosen on val (with its interval) and at a fixed
k (20 by default) (md, csv). A k-NN result made before k was chosen on val (its `best_k` was
the argmax of test scores) is refused, with the command that remakes it. With one seed a
few-shot std is null and printed without `±`. Which datasets and encoders appear: the table
config's lists, else every one found. As in the paper tables, a cell that is not a plain
run carries a dagger with its reasons under the table (`flags.protocol_flags`), and the
intervals are labelled with the level their runs recorded; an encoder whose results mix
levels is refused (`stats.column_level`). The results are read as every table reads them
(`found.scan`): each file once, only done ones (a damaged, incomplete or misplaced file, one
whose record names another encoder or dataset than its path, is listed with its fix), and
two results for one shown cell are an error naming both files.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from probe.report.tables.found import Found, claims
from probe.report.tables.frame import load_results
from probe.report.tables.render import DAGGER
from probe.report.tables.stats import column_level, interval_level, percent

log = logging.getLogger(__name__)
# the per-k field of each evaluation's record
PER_K = {"fewshot": "by_k", "knn": "test_score_by_k"}


@dataclass
class EvalTable:
    """(encoder, dataset) -> the result record of one evaluation, and the display order."""

    name: str
    title: str
    kind: str
    results: dict[tuple[str, str], dict[str, Any]]
    encoders: list[str]
    datasets: list[str]
    labels: dict[str, str] = field(default_factory=dict)
    k: int = 20
    bad_files: list[str] = field(default_factory=list)
    flags: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # dagger reasons
    levels: dict[str, float] = field(default_factory=dict)  # encoder -> its intervals' level

    def label(self, name: str) -> str:
        return self.labels.get(name, name)

    def dagger(self, enc: str, ds: str) -> str:
        return DAGGER if self.flags.get((enc, ds)) else ""


def scan(results_dirs: list[str | Path], kind: str) -> tuple[list[Found], list[str], dict]:
    """The done `kind` results (the rows of `probe.load_results`: each file once; damaged,
    incomplete or misplaced ones listed with the command that remakes them), why each other
    file is not, and each result's dagger reasons by path. Two results for one cell are
    refused in `build_eval_table`, for the shown cells."""
    frame = load_results(results_dirs, evals=[kind])
    found, bad, flags = [], list(frame.attrs["bad_files"]), {}
    for row in frame.itertuples(index=False):  # the per-k field: JSON keys, shots or k values
        if not isinstance(row.record.get(PER_K[kind]), dict):
            bad.append(f"{row.path}: its {PER_K[kind]} is not a mapping")
            continue
        found.append(Found(Path(row.path), row.record))
        flags[row.path] = list(row.flags)
    return found, bad, flags


def build_eval_table(cfg: dict[str, Any], *, results_dirs: list[str | Path]) -> EvalTable:
    kind = cfg["kind"]
    found, bad, flags = scan(results_dirs, kind)
    encoders = cfg.get("encoders") or sorted({f.key[0] for f in found})
    datasets = cfg.get("datasets") or sorted({f.key[1] for f in found})
    shown = [f for f in found if f.key[0] in encoders and f.key[1] in datasets]
    cells = claims(shown, key=lambda f: f.key, path=lambda f: f.path)  # two for one: refused
    results = {k: {**f.record, "path": str(f.path)} for k, f in cells.items()}
    t = EvalTable(name=cfg["name"], title=cfg.get("title") or cfg["name"], kind=kind,
                  results=results, encoders=list(encoders), datasets=list(datasets),
                  labels=dict(cfg.get("labels") or {}), k=int(cfg.get("k") or 20),
                  bad_files=bad)  # fmt: skip
    t.flags = {key: flags[rec["path"]] for key, rec in results.items()}
    for enc in t.encoders:
        shown = [r for (e, d), r in results.items() if e == enc and d in t.datasets]
        cells = [(r["path"], interval_level(r, r["path"])) for r in shown]
        t.levels[enc] = column_level(t.label(enc), cells)
    return t


def _notes(t: EvalTable) -> list[str]:
    """The dagger's reasons, cell by cell, as the paper tables list them."""
    marked = [(e, d) for e in t.encoders for d in t.datasets if t.flags.get((e, d))]
    if not marked:
        return []
    lines = ["", f"{DAGGER} Not a plain protocol run ({len(marked)}):"]
    return lines + [f"- {t.label(e)} on {t.label(d)} (`{t.results[(e, d)]['path']}`): "
                    f"{'; '.join(t.flags[(e, d)])}" for e, d in marked]  # fmt: skip


def _levels_text(t: EvalTable) -> str:
    shown = {t.levels[e] for e in t.encoders if any((e, d) in t.results for d in t.datasets)}
    if len(shown) <= 1:
        return f"its {percent(next(iter(shown), 0.95))} interval"
    return "its interval (" + ", ".join(
        f"{t.label(e)}: {percent(t.levels[e])}" for e in t.encoders) + ")"  # fmt: skip


def _shots(t: EvalTable, ds: str) -> list[int]:
    return sorted({int(k) for (_, d), r in t.results.items() if d == ds for k in r["by_k"]})


def _fewshot_md(t: EvalTable) -> list[str]:
    lines = []
    for ds in t.datasets:
        shots = _shots(t, ds)
        lines += ["", f"#### {t.label(ds)}", "", "| Encoder | " + " | ".join(
            f"{k}-shot" for k in shots) + " |", "|---|" + "---:|" * len(shots)]  # fmt: skip
        for enc in t.encoders:
            rec = t.results.get((enc, ds))
            if rec is None:
                continue
            cells = [rec["by_k"].get(str(k)) for k in shots]
            lines.append(
                f"| {t.label(enc)} | "
                + " | ".join("-" if c is None else _mean_std(c) + t.dagger(enc, ds) for c in cells)
                + " |"
            )
    return lines


def _num(value: Any) -> str:
    return value if isinstance(value, str) else f"{value:.2f}"


def _mean_std(cell: dict[str, Any]) -> str:
    """`mean ± std` over seeds; the mean alone where there is no std (one seed)."""
    std = cell.get("std")
    return f"{cell['mean']:.2f}" if std is None else f"{cell['mean']:.2f} ± {std:.2f}"


def _knn_md(t: EvalTable) -> list[str]:
    head = ["Dataset"] + [f"{t.label(e)} {w}" for e in t.encoders
                          for w in ("k chosen on val", f"k={t.k}")]  # fmt: skip
    lines = ["", "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for ds in t.datasets:
        row = [t.label(ds)]
        for enc in t.encoders:
            rec = t.results.get((enc, ds))
            fixed = _knn_fixed(rec, t.k)
            row += [_knn_chosen(rec) + t.dagger(enc, ds) if rec else "-",
                    f"{fixed:.2f}" if fixed is not None else "-"]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
    return lines + ["", "k is chosen on the val split (bank = train); the score is the test "
                    f"score at that k (bank = train + val), ± half {_levels_text(t)}."]  # fmt: skip


def _knn_chosen(rec: dict[str, Any]) -> str:
    low, high = rec["score_ci"]
    return f"{rec['score']:.2f} ± {(high - low) / 2:.2f} (k={rec['k']})"


def _knn_fixed(rec: dict | None, k: int) -> float | None:
    if rec is None or str(k) not in rec["test_score_by_k"]:
        return None
    return float(rec["test_score_by_k"][str(k)])


def to_markdown(t: EvalTable) -> str:
    lines = [f"### {t.title}"]
    lines += _fewshot_md(t) if t.kind == "fewshot" else _knn_md(t)
    lines += _notes(t)
    if not t.results:
        lines += ["", f"No {t.kind} results found: run `python -m probe eval={t.kind} ...`."]
    if t.bad_files:
        lines += ["", "Result files that are not done (skipped), each with its fix:"]
        lines += [f"- {b}" for b in t.bad_files]
    return "\n".join(lines) + "\n"


def to_csv(t: EvalTable) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if t.kind == "fewshot":
        w.writerow(["dataset", "encoder", "k", "mean", "low", "high", "level", "std", "seeds",
                    "scores"])  # fmt: skip
        for (enc, ds), rec in sorted(t.results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            for k, v in sorted(rec["by_k"].items(), key=lambda kv: int(kv[0])):
                std = "" if v.get("std") is None else f"{v['std']:.2f}"
                low, high = v.get("score_ci") or ("", "")
                scores = ";".join(f"{s:.2f}" for s in v["scores"])
                w.writerow([ds, enc, k, f"{v['mean']:.2f}", _num(low), _num(high),
                            t.levels.get(enc), std, len(v["scores"]), scores])  # fmt: skip
        return buf.getvalue()
    w.writerow(["dataset", "encoder", "k", "score", "low", "high", "level", f"k{t.k}_score",
                "temperature"])  # fmt: skip
    for (enc, ds), rec in sorted(t.results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        fixed = _knn_fixed(rec, t.k)
        low, high = rec["score_ci"]
        w.writerow([ds, enc, rec["k"], f"{rec['score']:.2f}", f"{low:.2f}", f"{high:.2f}",
                    t.levels.get(enc), "" if fixed is None else f"{fixed:.2f}",
                    rec.get("temperature")])  # fmt: skip
    return buf.getvalue()


def fewshot_png(t: EvalTable, *, dpi: int = 150) -> bytes:
    """Score against shots (log axis) per dataset, a line and a +-1 std band per encoder."""
    n = max(len(t.datasets), 1)
    ncols = min(3, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(4.2 * ncols + 1.8, 3.2 * nrows))
    FigureCanvasAgg(fig)
    for i, ds in enumerate(t.datasets):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for j, enc in enumerate(t.encoders):
            rec = t.results.get((enc, ds))
            if rec is None:
                continue
            ks = sorted(int(k) for k in rec["by_k"])
            mean = [rec["by_k"][str(k)]["mean"] for k in ks]
            std = [rec["by_k"][str(k)]["std"] or 0.0 for k in ks]  # null with one seed
            ax.plot(ks, mean, marker="o", color=f"C{j}", label=t.label(enc))
            ax.fill_between(ks, [m - s for m, s in zip(mean, std, strict=True)],
                            [m + s for m, s in zip(mean, std, strict=True)], color=f"C{j}",
                            alpha=0.2, linewidth=0)  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xticks(_shots(t, ds) or [1])
        ax.set_xticklabels([str(k) for k in _shots(t, ds)] or ["1"])
        ax.set_title(t.label(ds), fontsize=9)
        ax.set_xlabel("training images per class")
        ax.set_ylabel("test score (%)")
        ax.grid(alpha=0.3)
    handles, labels = fig.axes[0].get_legend_handles_labels() if fig.axes else ([], [])
    if handles:
        fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False)
    fig.suptitle(t.title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.85, 0.95))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
