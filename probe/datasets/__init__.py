"""Dataset families. Each config in `configs/dataset/` names one family's `build` via `_target_`.

A family returns an `ImageDataset`: named source splits (items, labels, a loader) and the
protocol's split definitions, metric and class count. Also owns the seeded, class-stratified
carving (`splits`). May import `core` only.
"""

from probe.datasets.base import METRICS, MULTILABEL_METRICS, ImageDataset, Split, ValSpec

__all__ = ["METRICS", "MULTILABEL_METRICS", "ImageDataset", "Split", "ValSpec"]
