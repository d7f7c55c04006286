"""EuroSAT (RGB) as the CLIP paper probes it: a sampled 10,000 / 5,000 subset, 10 classes.

EuroSAT has no train/test split. The CLIP paper's Table 9 gives 10,000 train and 5,000 test
images, which is 1,000 and 500 of each of the 10 classes; which images it drew is not
published (openai/CLIP issue 45; docs/protocol.md section 7). We list the images with
torchvision's `EuroSAT` (an `ImageFolder` over `root/eurosat/2750/CLASS/*.jpg`, which its
download unpacks) and draw, per class, `train_per_class` then `test_per_class` images with
`split_seed` (`probe.datasets.splits.per_class_subsets`): the same subset on every machine,
other images than the paper's. The rest of each class is used by neither split.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from probe.datasets.base import ImageDataset
from probe.datasets.common import Meta, assemble, file_split, require_root
from probe.datasets.splits import per_class_subsets
from probe.datasets.torchvision_ds import open_torchvision


def build(
    *,
    root: str,
    train_per_class: int = 1000,
    test_per_class: int = 500,
    split_seed: int = 0,
    download: bool = False,
    hint: str = "",
    **cfg: Any,
) -> ImageDataset:
    meta = Meta.of(cfg)
    base = require_root(root, dataset=meta.name, hint=hint, download=download)
    ds = open_torchvision(cls_name="EuroSAT", root=base, download=download, dataset=meta.name,
                          hint=hint, kwargs={})  # fmt: skip
    paths = [p for p, _ in ds.samples]
    labels = np.asarray([y for _, y in ds.samples], dtype=np.int64)
    sizes = {"train": train_per_class, "test": test_per_class}
    drawn = per_class_subsets(labels, sizes=sizes, seed=split_seed, dataset=meta.name,
                              classes=list(ds.classes))  # fmt: skip
    splits = {
        name: file_split([paths[i] for i in idx], labels[idx], root=base, dataset=meta.name)
        for name, idx in drawn.items()
    }
    info = {"source": "torchvision.EuroSAT", "per_class": sizes, "split_seed": split_seed,
            "listed": len(paths)}  # fmt: skip
    return assemble(meta, splits, classes=list(ds.classes), info=info)
