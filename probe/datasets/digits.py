"""scikit-learn's bundled 8x8 handwritten digits: 1,797 real images, no download.

The offline demo dataset. It goes through the same `ImageDataset` path as the real datasets:
images are PIL grayscale images, and the train/test split is a seeded stratified hold-out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from probe.datasets.base import ImageDataset, Split, resolve_val
from probe.datasets.splits import stratified_holdout


class _DigitImages:
    """Turns an index into a PIL image; picklable so DataLoader workers can use it."""

    def __init__(self, images: np.ndarray) -> None:
        # 0..16 ink levels to 0..255 grey levels, rounded once so every run sees the same bytes.
        self.images = np.round(images * (255.0 / 16.0)).astype(np.uint8)

    def __call__(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index], mode="L")


def build(
    *,
    name: str = "digits",
    test_count: int = 450,
    split_seed: int = 0,
    metric: str = "top1",
    val: Any = None,
    **_: Any,
) -> ImageDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = stratified_holdout(labels, count=test_count, seed=split_seed)
    load = _DigitImages(bunch.images)
    splits = {
        split: Split(items=idx.tolist(), labels=labels[idx], load=load, ids=[str(i) for i in idx])
        for split, idx in (("train", train_idx), ("test", test_idx))
    }
    return ImageDataset(
        name=name,
        num_classes=10,
        metric=metric,
        splits=splits,
        val=resolve_val(val, has_val=False),
        classes=[str(i) for i in range(10)],
        expected_sizes={"train": len(labels) - test_count, "test": test_count},
    )
