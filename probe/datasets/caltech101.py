"""Caltech-101 as the CLIP protocol uses it: 102 classes (with the background class), a seeded
draw of 30 training images per class, every other image for test (docs/protocol.md section 3).

torchvision's `Caltech101` drops `BACKGROUND_Google` and has no split, so we read the
`101_ObjectCategories/` folders ourselves (torchvision's layout: `root/caltech101/`). The draw
uses numpy's PCG64 seeded with `split_seed` (0, ours) over each class's sorted file names,
classes in sorted order: the same split on every machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.datasets.base import ImageDataset
from probe.datasets.common import Meta, assemble, file_split, first_existing, require_dir
from probe.datasets.imagefolder import class_folders, read_class_folders


def per_class_draw(
    labels: np.ndarray, *, per_class: int, seed: int, dataset: str, classes: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: `per_class` random images of each class for train, rest test."""
    rng = np.random.Generator(np.random.PCG64(seed))
    train = []
    for c in range(len(classes)):
        idx = np.flatnonzero(labels == c)
        if len(idx) <= per_class:
            raise ProbeError(
                f"dataset {dataset}: class {classes[c]!r} has {len(idx)} images, not more than "
                f"dataset.train_per_class={per_class}; the folder is incomplete"
            )
        train.append(np.sort(rng.permutation(idx)[:per_class]))
    train_idx = np.sort(np.concatenate(train))
    return train_idx, np.setdiff1d(np.arange(len(labels)), train_idx)


def build(
    *, root: str, train_per_class: int = 30, split_seed: int = 0, hint: str = "", **cfg: Any
) -> ImageDataset:
    meta = Meta.of(cfg)
    base = Path(root).expanduser()
    usual = base / "caltech101" / "101_ObjectCategories"  # torchvision's layout
    found = first_existing([usual, base / "101_ObjectCategories"])
    folder = require_dir(found or usual, dataset=meta.name, fix=hint)
    classes = class_folders(folder, dataset=meta.name)
    paths, labels = read_class_folders(folder, classes, root=folder, dataset=meta.name)
    labels_arr = np.asarray(labels)
    train_idx, test_idx = per_class_draw(
        labels_arr, per_class=train_per_class, seed=split_seed, dataset=meta.name, classes=classes
    )
    splits = {
        name: file_split([paths[i] for i in idx], labels_arr[idx], root=folder, dataset=meta.name)
        for name, idx in (("train", train_idx), ("test", test_idx))
    }
    info = {"source": f"{folder} ({len(classes)} classes, {train_per_class} train per class)"}
    return assemble(meta, splits, classes=classes, info=info)
