"""Probe-time feature normalisation (`probe.normalize`): what the classifier is fitted on.

`none` is the CLIP paper's protocol (the features as extracted). `l2` divides every row by
its Euclidean norm, as CLIP_benchmark's linear probe does at extraction
(`F.normalize(image_features, dim=-1)`, clip_benchmark/metrics/linear_probe.py `Featurizer`):
the same `x / ||x||` (whatever the magnitude: a non-zero row with a norm below
F.normalize's 1e-12 still becomes unit length, a zero row stays zero), applied to train, val
and test alike before any fit. The cache keeps the raw features, so both settings share one
extraction.
"""

from __future__ import annotations

import numpy as np

from probe.core.errors import ProbeError
from probe.core.rows import EPS, Rows

NORMALIZE = ("none", "l2")
__all__ = ["EPS", "NORMALIZE", "check_normalize", "normalize_rows"]


def check_normalize(value: object) -> str:
    how = "none" if value is None else str(value)
    if how not in NORMALIZE:
        raise ProbeError(f"probe.normalize={value!r} is not valid; allowed: {', '.join(NORMALIZE)}")
    return how


def normalize_rows(X: np.ndarray | Rows, how: str) -> np.ndarray | Rows:
    """`X` as the probe sees it: unchanged for `none`; for `l2` a selection whose rows are
    divided by their norms as they are read (`Rows.normalized`: float64 arithmetic, float32
    rows), so normalising never copies the features."""
    if how == "none":
        return X
    return Rows.of(X).normalized()
