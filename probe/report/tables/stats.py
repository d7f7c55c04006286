"""Noise in the paper tables: our interval, whether it holds the published number, and
whether two encoders really differ.

- Each result carries the 95% bootstrap interval of its test score (`score_ci`); a cell
  shows `score ± half-width`, and the published number *reproduces* when it lies inside our
  interval (there are no published predictions to pair with, so this is the only test).
- Two encoders probed on the same test images (the same `test_content_hash`: sample ids and
  labels) are compared pairwise from their saved test predictions (the `.npz` beside each
  result): the paired bootstrap interval of the difference of their scores
  (`probe.evaluations.bootstrap.paired_diff_ci`); a difference whose interval contains 0 is
  not significant. The reference is the layout's first encoder.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probe.evaluations.bootstrap import paired_diff_ci, significance

log = logging.getLogger(__name__)


@dataclass
class PairDiff:
    """ours(a) - ours(b) on one dataset, with its paired interval, or why there is none."""

    a: str
    b: str
    dataset: str
    diff: float | None = None
    interval: list[float] | None = None
    why: str | None = None  # set when the pair could not be compared

    @property
    def significant(self) -> bool | None:
        return None if self.interval is None else significance(self.interval)


def reproduced(ci: Any, published: float | None) -> bool | None:
    if ci is None or published is None:
        return None
    low, high = ci
    return bool(low <= published <= high)


def _predictions(res: Any) -> tuple[np.ndarray, np.ndarray] | str:
    """(test labels, test predictions) from the head saved beside a result, or why not."""
    head = res.record.get("head") or {}
    path = Path(res.path).with_suffix(".npz")
    if not head or not path.is_file():
        return "no saved test predictions (.npz beside the result)"
    data = path.read_bytes()
    if head.get("sha256") and hashlib.sha256(data).hexdigest() != head["sha256"]:
        return f"{path} is not the head its result names (SHA-256 differs)"
    with np.load(path, allow_pickle=False) as npz:
        return np.asarray(npz["test_label"]), np.asarray(npz["test_pred"])


def pair(a: Any, b: Any, *, metric: str, **bootstrap: Any) -> PairDiff:
    """The paired comparison of two results (`tables.data.Result`) on one dataset."""
    out = PairDiff(a=a.encoder, b=b.encoder, dataset=a.dataset)
    ha, hb = a.record.get("test_content_hash"), b.record.get("test_content_hash")
    if ha is None or ha != hb:
        out.why = "not known to be the same test images (test_content_hash differs or absent)"
        return out
    got = [_predictions(r) for r in (a, b)]
    bad = next((g for g in got if isinstance(g, str)), None)
    if bad is not None:
        out.why = bad
        return out
    (ya, pa), (yb, pb) = got
    if len(ya) != len(yb) or not np.array_equal(ya, yb):
        out.why = "the saved test labels differ"
        return out
    out.diff = a.score - b.score
    out.interval = paired_diff_ci(pa == ya, pb == yb, ya, metric=metric, **bootstrap)
    return out
