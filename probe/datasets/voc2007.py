"""PASCAL VOC 2007 classification: 20 classes, multi-label, the devkit's official splits.

`VOCtrainval_06-Nov-2007.tar` and `VOCtest_06-Nov-2007.tar` both unpack to
`VOCdevkit/VOC2007/`: `JPEGImages/NNNNNN.jpg` and, per class and image set,
`ImageSets/Main/{class}_{train,val,test}.txt`, one `NNNNNN flag` line per image of the set,
the flag 1 (the class is present), -1 (absent) or 0 ("difficult": only instances marked
difficult). Splits: train 2,501, val 2,510 (official), test 4,952 (docs/protocol.md
section 3). The labels are the devkit's flags as they are, one row of 20 per image (N x 20,
columns in the devkit's class order): the evaluation needs the 0s (the devkit leaves such an
image out of that class's ranking, `probe.evaluations.voc_map`), and training reads them as
present (`probe.evaluations.multilabel`). Every class file of a split must list the same
images in the same order; one that does not is an error naming both files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.datasets.base import ImageDataset
from probe.datasets.common import Meta, assemble, file_split, require_dir, require_file

# VOC 2007's classes in the devkit's order (VOCinit.m's VOCopts.classes; the same list as
# LAION-AI/CLIP_benchmark clip_benchmark/datasets/voc2007.py lines 19-23)
CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
           "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
           "sheep", "sofa", "train", "tvmonitor")  # fmt: skip
SPLITS = ("train", "val", "test")  # ours are the devkit's image-set names
FLAGS = (-1, 0, 1)  # absent, difficult, present


def read_flags(path: Path, *, dataset: str) -> tuple[list[str], list[int]]:
    """(image ids, flags) of one `{class}_{set}.txt`, in file order."""
    ids, flags = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("1", "0", "-1"):
            raise ProbeError(
                f"dataset {dataset}: {path} line {number} is {line.strip()!r}, not "
                "'NNNNNN FLAG' with FLAG 1, 0 or -1; use the lists of the unmodified devkit"
            )
        ids.append(parts[0])
        flags.append(int(parts[1]))
    return ids, flags


def build(*, root: str, hint: str = "", **cfg: Any) -> ImageDataset:
    meta = Meta.of(cfg)
    base = Path(root).expanduser()
    devkit = require_dir(base / "VOCdevkit" / "VOC2007", dataset=meta.name, fix=hint)
    lists = devkit / "ImageSets" / "Main"
    images = devkit / "JPEGImages"
    fix = (
        f"Unpack VOCtrainval_06-Nov-2007.tar (train, val) and VOCtest_06-Nov-2007.tar (test, "
        f"its annotated release) into {base}, giving {lists}/CLASS_SPLIT.txt for the 20 "
        f"classes and {images}/NNNNNN.jpg"
    )
    require_dir(images, dataset=meta.name, fix=fix)
    splits = {}
    for split in SPLITS:
        first = require_file(lists / f"{CLASSES[0]}_{split}.txt", dataset=meta.name, fix=fix)
        ids, _ = read_flags(first, dataset=meta.name)
        columns = []
        for cls in CLASSES:
            listing = require_file(lists / f"{cls}_{split}.txt", dataset=meta.name, fix=fix)
            these, flags = read_flags(listing, dataset=meta.name)
            if these != ids:
                raise ProbeError(
                    f"dataset {meta.name}: {listing} does not list the images of {first} in "
                    "the same order; use the lists of one devkit release"
                )
            columns.append(flags)
        labels = np.array(columns, dtype=np.int64).T.reshape(len(ids), len(CLASSES))
        paths = [images / f"{i}.jpg" for i in ids]
        splits[split] = file_split(paths, labels, root=images, dataset=meta.name)
    info = {
        "source": f"VOC 2007 devkit image sets ({lists})",
        "difficult": {s: int((sp.labels == 0).sum()) for s, sp in splits.items()},
    }
    return assemble(meta, splits, classes=list(CLASSES), info=info)
