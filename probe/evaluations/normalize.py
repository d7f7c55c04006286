"""Probe-time feature normalisation (`probe.normalize`): what the classifier is fitted on.

`none` is the CLIP paper's protocol (the features as extracted). `l2` divides every row by
its Euclidean norm, as CLIP_benchmark's linear probe does at extraction
(`F.normalize(image_features, dim=-1)`, clip_benchmark/metrics/linear_probe.py `Featurizer`):
the same `x / max(||x||, 1e-12)`, applied to train, val and test alike before any fit. The
cache keeps the raw features, so both settings share one extraction.
"""

from __future__ import annotations

import numpy as np

from probe.core.errors import ProbeError

NORMALIZE = ("none", "l2")
EPS = 1e-12  # torch.nn.functional.normalize's default
_ROWS = 65536  # rows per chunk: bounded float64 scratch on ImageNet-sized splits


def check_normalize(value: object) -> str:
    how = "none" if value is None else str(value)
    if how not in NORMALIZE:
        raise ProbeError(
            f"probe.normalize={value!r} is not valid; use one of {', '.join(NORMALIZE)}"
        )
    return how


def normalize_rows(X: np.ndarray, how: str) -> np.ndarray:
    """`X` as the probe sees it: unchanged for `none`, unit rows (float32) for `l2`.

    Arrays the carve already copied are normalised in place; a read-only memory map (the
    test split) is copied once.
    """
    if how == "none":
        return X
    owned = isinstance(X, np.ndarray) and not isinstance(X, np.memmap) and X.flags.writeable
    out = X if owned and X.dtype == np.float32 else np.empty(X.shape, dtype=np.float32)
    for a in range(0, len(X), _ROWS):
        block = np.asarray(X[a : a + _ROWS], dtype=np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))[:, None]
        out[a : a + _ROWS] = block / np.maximum(norms, EPS)
    return out
