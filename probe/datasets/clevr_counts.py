"""CLEVR Counts: how many objects a rendered CLEVR scene holds, 3 to 10 (8 classes).

The CLIP paper's Table 9 lists CLEVR Counts with 8 classes, 2,000 train and 500 test images,
scored by accuracy, a subset of CLEVR v1.0 labelled with each scene's object count (VTAB's
`count_all` task: label = count - 3, google-research/task_adaptation d7630d3,
`task_adaptation/data/clevr.py` lines 32-34 and 57-59; VTAB trains on CLEVR's train split
and tests on its val split, lines 103-107, as CLEVR's test scenes are unpublished). Which
2,500 images the paper drew is not published, so the draw is ours: `train_count` images
drawn uniformly without replacement from CLEVR's train split and `test_count` from its val
split, by numpy's PCG64 seeded with `split_seed` over the file names in sorted order (train
first, then test from the same stream): the same subset on every machine. Val for the C
search is carved from the 2,000 train images, so the final fit (train + val) is Table 9's
2,000.

torchvision's `CLEVRClassification` reads the layout (`{root}/clevr/CLEVR_v1.0/images/{train,
val}/` and `scenes/CLEVR_{train,val}_scenes.json`) and gives each image's object count.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.datasets.base import ImageDataset
from probe.datasets.common import Meta, assemble, file_split, require_root
from probe.datasets.torchvision_ds import open_torchvision

SOURCE = {"train": "train", "test": "val"}  # our split -> the CLEVR split it is drawn from
FEWEST, MOST = 3, 10  # CLEVR scenes hold 3 to 10 objects: class = count - 3


def draw(n: int, k: int, rng: np.random.Generator, *, dataset: str, what: str) -> np.ndarray:
    """k of n indices, uniformly without replacement, in ascending order."""
    if not 0 < k <= n:
        raise ProbeError(
            f"dataset {dataset}: dataset.{what}={k} images asked, but the CLEVR split it is drawn "
            f"from has {n}; use the whole CLEVR_v1.0 archive or a count between 1 and {n}"
        )
    return np.sort(rng.permutation(n)[:k])


def build(
    *,
    root: str,
    train_count: int = 2000,
    test_count: int = 500,
    split_seed: int = 0,
    download: bool = False,
    hint: str = "",
    **cfg: Any,
) -> ImageDataset:
    meta = Meta.of(cfg)
    base = require_root(root, dataset=meta.name, hint=hint, download=download)
    rng = np.random.Generator(np.random.PCG64(split_seed))
    counts = {"train": train_count, "test": test_count}
    splits = {}
    for split, source in SOURCE.items():
        ds = open_torchvision(cls_name="CLEVRClassification", root=base, download=download,
                              dataset=meta.name, hint=hint, kwargs={"split": source})  # fmt: skip
        files, objects = list(ds._image_files), list(ds._labels)
        pick = draw(len(files), counts[split], rng, dataset=meta.name, what=f"{split}_count")
        wrong = next(((files[i], objects[i]) for i in pick if not FEWEST <= objects[i] <= MOST),
                     None)  # fmt: skip
        if wrong is not None:
            raise ProbeError(
                f"dataset {meta.name}: {wrong[0]} is a scene of {wrong[1]} objects, outside "
                f"CLEVR's {FEWEST} to {MOST}; use the unmodified CLEVR_v1.0 scenes files"
            )
        labels = np.asarray([objects[i] for i in pick], dtype=np.int64) - FEWEST
        splits[split] = file_split([files[i] for i in pick], labels, root=base, dataset=meta.name)
    info = {
        "source": f"CLEVR v1.0 object counts, {train_count} of train / {test_count} of val "
                  f"drawn with split_seed={split_seed} ({base})",
    }  # fmt: skip
    classes = [str(n) for n in range(FEWEST, MOST + 1)]
    return assemble(meta, splits, classes=classes, info=info)
