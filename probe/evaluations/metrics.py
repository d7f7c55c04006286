"""The datasets' test metrics, in percent: top-1 and mean per-class accuracy."""

from __future__ import annotations

import numpy as np

from probe.core.errors import ProbeError
from probe.datasets.base import METRICS


def score(pred: np.ndarray, y: np.ndarray, metric: str) -> float:
    """Percent, 0 to 100. mean_per_class averages over the classes present in `y`."""
    if metric == "top1":
        return float((pred == y).mean() * 100.0)
    if metric == "mean_per_class":
        classes = np.unique(y)
        return float(np.mean([(pred[y == c] == c).mean() for c in classes]) * 100.0)
    raise ProbeError(f"metric={metric!r} unknown; allowed: {', '.join(METRICS)}")
