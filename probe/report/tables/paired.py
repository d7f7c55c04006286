"""`python -m probe.table table=attentive`: datasets x encoders, the linear probe beside the
attentive probe, and their paired difference.

An encoder's two results have two names: its linear probe is filed under the encoder's
result name (`dinov2_l14`, pooled features), its attentive probe under the name of its token
features (`right_name`, by default `{encoder}@tokens`). Each cell shows `score ± half-width`
of the result's interval; the difference (attentive - linear) gets the paired interval of
the two heads' saved test predictions when both were scored on the same test images
(`stats.pair`, `n.s.` when it contains 0). Results are read as every table reads them
(`probe.load_results`: done files only, the others listed with their fix; two results for
one cell an error naming both); a cell that is not a plain run carries a dagger with its
reasons under the table.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from probe.report.tables.found import claims
from probe.report.tables.frame import load_results
from probe.report.tables.render import DAGGER
from probe.report.tables.stats import PairDiff, pair, pair_options


@dataclass
class PairedTable:
    name: str
    title: str
    kind: str
    left: str
    right: str
    encoders: list[str]
    datasets: list[str]
    results: dict[tuple[str, str, str], dict[str, Any]]  # (encoder, dataset, eval) -> record
    diffs: dict[tuple[str, str], PairDiff] = field(default_factory=dict)
    flags: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    bad_files: list[str] = field(default_factory=list)

    def label(self, name: str) -> str:
        return self.labels.get(name, name)


def build_paired_table(cfg: dict[str, Any], *, results_dirs: list[str | Path]) -> PairedTable:
    left, right = cfg.get("left", "linear"), cfg.get("right", "attentive")
    template = cfg.get("right_name") or "{encoder}@tokens"
    frame = load_results(results_dirs, evals=[left, right])
    rows = list(frame.itertuples(index=False))
    found = {}
    for ev in (left, right):  # two results for one cell: refused
        mine = [r for r in rows if r.eval == ev]
        cells = claims(mine, key=lambda r: (r.encoder, r.dataset), path=lambda r: r.path)
        found.update({(*k, ev): r for k, r in cells.items()})
    prefix, _, suffix = template.partition("{encoder}")
    rights = {(_base(e, prefix, suffix), d) for e, d, ev in found if ev == right}
    encoders = cfg.get("encoders") or sorted({e for e, _ in rights})
    datasets = cfg.get("datasets") or sorted({d for _, d in rights})
    t = PairedTable(name=cfg["name"], title=cfg.get("title") or cfg["name"], kind=right,
                    left=left, right=right, encoders=list(encoders), datasets=list(datasets),
                    results={}, labels=dict(cfg.get("labels") or {}),
                    bad_files=list(frame.attrs["bad_files"]))  # fmt: skip
    opts = pair_options(cfg.get("bootstrap"))
    for enc in t.encoders:
        for ds in t.datasets:
            rows = {left: found.get((enc, ds, left)),
                    right: found.get((template.format(encoder=enc), ds, right))}  # fmt: skip
            for ev, row in rows.items():
                if row is not None:
                    t.results[(enc, ds, ev)] = {**row.record, "path": row.path}
                    t.flags[(enc, ds, ev)] = list(row.flags)
            if all(r is not None for r in rows.values()):
                a, b = (_as_result(rows[right]), _as_result(rows[left]))
                t.diffs[(enc, ds)] = pair(a, b, metric=rows[right].metric, **opts)
    return t


def _base(name: str, prefix: str, suffix: str) -> str:
    """The encoder whose right-hand result is filed under `name` (`right_name` undone)."""
    if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix + suffix):
        return name[len(prefix) : len(name) - len(suffix)]
    return name


def _as_result(row: Any) -> SimpleNamespace:
    return SimpleNamespace(encoder=row.encoder, dataset=row.dataset, score=row.score,
                           record=row.record, path=row.path)  # fmt: skip


def _cell(rec: dict[str, Any] | None, dagger: bool) -> str:
    if rec is None:
        return "-"
    ci = rec.get("score_ci")
    half = f" ± {(ci[1] - ci[0]) / 2:.2f}" if isinstance(ci, list) and len(ci) == 2 else ""
    return f"{rec['score']:.2f}{half}{DAGGER if dagger else ''}"


def _diff(d: PairDiff | None) -> str:
    if d is None or d.diff is None:
        return "-"
    if d.interval is None:
        return f"{d.diff:+.2f}"
    low, high = d.interval
    sig = "" if low > 0 or high < 0 else " n.s."
    return f"{d.diff:+.2f} [{low:+.2f}, {high:+.2f}]{sig}"


def to_markdown(t: PairedTable) -> str:
    head = ["Dataset"] + [f"{t.label(e)} {w}" for e in t.encoders
                          for w in (t.left, t.right, f"{t.right} - {t.left}")]  # fmt: skip
    lines = [f"### {t.title}", "", "| " + " | ".join(head) + " |",
             "|---|" + "---:|" * (len(head) - 1)]  # fmt: skip
    for ds in t.datasets:
        row = [t.label(ds)]
        for enc in t.encoders:
            row += [_cell(t.results.get((enc, ds, ev)), bool(t.flags.get((enc, ds, ev))))
                    for ev in (t.left, t.right)]  # fmt: skip
            row.append(_diff(t.diffs.get((enc, ds))))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Each score ± half its interval; the difference with its paired interval "
              "over the same test images (n.s.: it contains 0)."]  # fmt: skip
    marked = [k for k, v in t.flags.items() if v]
    if marked:
        lines += ["", f"{DAGGER} Not a plain protocol run ({len(marked)}):"]
        lines += [f"- {t.label(e)} on {t.label(d)} ({ev}, `{t.results[(e, d, ev)]['path']}`): "
                  f"{'; '.join(t.flags[(e, d, ev)])}" for e, d, ev in marked]  # fmt: skip
    if not any(ev == t.right for _, _, ev in t.results):
        lines += ["", f"No {t.kind} results found: run `python -m probe eval={t.kind} ...`."]
    if t.bad_files:
        lines += ["", "Result files that are not done (skipped), each with its fix:"]
        lines += [f"- {b}" for b in t.bad_files]
    return "\n".join(lines) + "\n"


def to_csv(t: PairedTable) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["dataset", "encoder", "eval", "score", "low", "high", "lr", "wd", "C",
                "diff", "diff_low", "diff_high"])  # fmt: skip
    for (enc, ds, ev), rec in sorted(t.results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        low, high = rec.get("score_ci") or ("", "")
        d = t.diffs.get((enc, ds)) if ev == t.right else None
        dl, dh = (d.interval or ("", "")) if d is not None else ("", "")
        w.writerow([ds, enc, ev, f"{rec['score']:.2f}", low, high, rec.get("lr", ""),
                    rec.get("wd", ""), rec.get("C", ""), "" if d is None or d.diff is None
                    else f"{d.diff:.2f}", dl, dh])  # fmt: skip
    return buf.getvalue()
