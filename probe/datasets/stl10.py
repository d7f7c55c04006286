"""STL-10: the whole labelled train set (5,000) by default, or one of its 10 official folds.

torchvision's `STL10` parses the binary archive (`root/stl10_binary/{train,test}_{X,y}.bin`,
images stored as 3 x 96 x 96, labels 1-based) and `fold_indices.txt` (one line of 1,000
0-based train indices per fold). The CLIP paper reports the mean over the 10 pre-defined
folds (openai/CLIP issue 45), each a 1,000-image train set; one run fits one probe, so
`dataset=stl10` fits on all 5,000 (as CLIP_benchmark does) and `dataset.fold=K` (0-9, with a
name of its own) fits on fold K, ten such runs giving the paper's protocol (docs/protocol.md
section 7). A fold keeps each image's index in the whole train set as its id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from probe.core.errors import ProbeError
from probe.core.images import to_rgb
from probe.datasets.base import ImageDataset, Split
from probe.datasets.common import Meta, assemble, require_file, require_root
from probe.datasets.torchvision_ds import open_torchvision

FOLDS = 10


class PlanarImages:
    """Index -> PIL image from an N x 3 x H x W uint8 array (torchvision's STL10 layout)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data

    def __call__(self, index: int) -> Image.Image:
        return to_rgb(Image.fromarray(np.ascontiguousarray(self.data[index].transpose(1, 2, 0))))


def fold_indices(path: Path, fold: int, *, dataset: str, n_train: int) -> np.ndarray:
    """Line `fold` of `fold_indices.txt`: the train indices of that fold."""
    lines = path.read_text().splitlines()
    idx = np.array(lines[fold].split(), dtype=np.int64) if fold < len(lines) else np.zeros(0)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= n_train or len(set(idx)) != idx.size:
        raise ProbeError(
            f"dataset {dataset}: {path} line {fold + 1} is not a list of distinct train indices "
            f"0..{n_train - 1}; use the fold_indices.txt of stl10_binary.tar.gz unmodified"
        )
    return idx


def build(
    *,
    root: str,
    fold: int | None = None,
    download: bool = False,
    hint: str = "",
    **cfg: Any,
) -> ImageDataset:
    meta = Meta.of(cfg)
    if fold is not None and (not isinstance(fold, int) or not 0 <= fold < FOLDS):
        raise ProbeError(
            f"dataset {meta.name}: dataset.fold={fold!r}; STL-10 has folds 0-{FOLDS - 1} "
            "(or dataset.fold=null: the whole train set)"
        )
    if fold is not None and meta.name == "stl10":
        raise ProbeError(
            f"dataset stl10: dataset.fold={fold} fits on one fold of 1,000 images; give it its "
            f"own name (dataset.name=stl10_fold{fold}) so its features and result do not "
            "replace the whole train set's"
        )
    base = require_root(root, dataset=meta.name, hint=hint, download=download)
    sets = {s: open_torchvision(cls_name="STL10", root=base, download=download,
                                dataset=meta.name, hint=hint, kwargs={"split": s})
            for s in ("train", "test")}  # fmt: skip
    splits: dict[str, Split] = {}
    for name, ds in sets.items():
        data, labels, keep = ds.data, ds.labels, np.arange(len(ds.labels))
        if name == "train" and fold is not None:
            listing = require_file(base / "stl10_binary" / "fold_indices.txt", dataset=meta.name,
                                   fix=hint)  # fmt: skip
            keep = fold_indices(listing, fold, dataset=meta.name, n_train=len(keep))
            data, labels = data[keep], labels[keep]
        ids = [f"{name}/{i}" for i in keep]
        splits[name] = Split(items=list(range(len(keep))), labels=labels,
                             load=PlanarImages(data), ids=ids)  # fmt: skip
    classes = list(getattr(sets["train"], "classes", []) or []) or None
    info = {"source": "torchvision.STL10", "fold": fold}
    return assemble(meta, splits, classes=classes, info=info)
