"""Every result as one table: `probe.load_results(results_dir)` returns a pandas DataFrame.

One row per done result file (`found.scan`: each file once, whole, where its record says),
for every evaluation: encoder, dataset, eval, protocol (null for the CLIP paper's, the only
one today), metric, score, its interval and level, C (linear) or k (k-NN), the dagger's
reasons (`flags`) and the path; few-shot rows give the mean at their largest shot count and
keep every k in `by_k`. The record itself is in the `record` column. Malformed or misplaced
files are not rows: they are listed in `frame.attrs["bad_files"]` (and logged), never fatal.
The paper tables read their linear results from this frame (`data.scan_results`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from probe.report.record import REQUIRED_BY_EVAL
from probe.report.tables.flags import protocol_flags
from probe.report.tables.found import Found, scan
from probe.report.tables.stats import interval_level

log = logging.getLogger(__name__)
COLUMNS = ("encoder", "dataset", "eval", "protocol", "metric", "score", "score_low",
           "score_high", "level", "C", "k", "flags", "path", "record")  # fmt: skip


def _row(item: Found) -> dict[str, Any]:
    rec = item.record
    score, ci = rec.get("score"), rec.get("score_ci")
    if rec.get("eval") == "fewshot" and rec.get("by_k"):
        top = rec["by_k"][max(rec["by_k"], key=int)]
        score, ci = top.get("mean"), top.get("score_ci")
    low, high = ci if isinstance(ci, list) and len(ci) == 2 else (None, None)
    return {
        "encoder": rec["encoder"],
        "dataset": rec["dataset"],
        "eval": rec.get("eval", "linear"),
        "protocol": rec.get("protocol"),
        "metric": rec.get("metric"),
        "score": score,
        "score_low": low,
        "score_high": high,
        "level": interval_level(rec, item.path) if low is not None else None,
        "C": rec.get("C"),
        "k": rec.get("k"),
        "flags": protocol_flags(rec),
        "path": str(item.path),
        "record": rec,
    }


def load_results(
    results_dir: str | Path | Sequence[str | Path], *, evals: Sequence[str] | None = None
) -> pd.DataFrame:
    """The done results under one results dir (or several), one row each."""
    dirs = [results_dir] if isinstance(results_dir, (str, Path)) else list(results_dir)
    rows, bad = [], []
    for evaluation in evals or list(REQUIRED_BY_EVAL):
        found, why = scan(dirs, evaluation)
        rows += [_row(item) for item in found]
        bad += why
    for line in bad:
        log.warning("not a done result: %s", line)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame.attrs["bad_files"] = bad
    return frame
