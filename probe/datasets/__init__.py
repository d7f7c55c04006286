"""Dataset families. Each config in `configs/dataset/` names one family's `build` via `_target_`."""

from probe.datasets.base import METRICS, ImageDataset, Split, ValSpec

__all__ = ["METRICS", "ImageDataset", "Split", "ValSpec"]
