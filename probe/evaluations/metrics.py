"""The datasets' test metrics, in percent: top-1 and mean per-class accuracy."""

from __future__ import annotations

import numpy as np

from probe.core.errors import ProbeError
from probe.datasets.base import METRICS, MULTILABEL_METRICS


def score(pred: np.ndarray, y: np.ndarray, metric: str) -> float:
    """Percent, 0 to 100. mean_per_class averages over the classes present in `y`.

    One predicted class per image against one label per image: multi-label labels (N x K)
    or a multi-label metric are refused, never scored as if they were single-label."""
    if np.ndim(y) != 1 or metric in MULTILABEL_METRICS:
        raise ProbeError(
            f"metric={metric} with labels of shape {np.shape(y)}: this scores one predicted "
            "class per image (top1, mean_per_class); a multi-label dataset is scored from its "
            "per-class scores by map11 (eval=linear, one-vs-rest: probe.evaluations.multilabel)"
        )
    if metric == "top1":
        return float((pred == y).mean() * 100.0)
    if metric == "mean_per_class":
        classes = np.unique(y)
        return float(np.mean([(pred[y == c] == c).mean() for c in classes]) * 100.0)
    raise ProbeError(f"metric={metric!r} unknown; allowed: {', '.join(METRICS)}")
