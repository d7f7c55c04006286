"""PatchCamelyon: 96 x 96 lymph-node patches, label 1 where the centre holds tumour tissue.

The CLIP paper's Table 9 lists it with 2 classes, 294,912 train and 32,768 test images, scored
by accuracy: its train count is the official train (262,144) plus valid (32,768) split, the
probe's final fit; the official valid split is our val. The data are six HDF5 files,
`camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5` (`x`: N x 96 x 96 x 3 uint8, `y`:
N x 1 x 1 x 1 labels), in torchvision's `PCAM` layout (`{root}/pcam/`; torchvision 0.29
`torchvision/datasets/pcam.py`, `_FILES`). torchvision's class opens the file again for every
image and lists no files, so the arrays are read here with h5py, one image at a time: the
train images alone are 7 GB.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from probe.core.errors import ProbeError
from probe.core.images import to_rgb
from probe.datasets.base import ImageDataset, Split
from probe.datasets.common import Meta, assemble, require_dir

FILES = {"train": "train", "val": "valid", "test": "test"}  # our split -> the file's name
# CLIP_benchmark's names (48de38c, `clip_benchmark/datasets/en_classnames.json`, `pcam`)
CLASSES = ("lymph node", "lymph node containing metastatic tumor tissue")
INSTALL = "pip install h5py (or pip install 'probe-bench[pcam]')"


def h5file(name: str) -> str:
    return f"camelyonpatch_level_2_split_{name}"


def require_h5py(dataset: str) -> Any:
    try:
        import h5py
    except ImportError:
        raise ProbeError(
            f"dataset {dataset}: PatchCamelyon's .h5 files are read with h5py, which is not "
            f"installed; {INSTALL}"
        ) from None
    return h5py


class H5Images:
    """Index -> PIL image from one `_x.h5` file; picklable, the file opened once per process
    (a handle inherited through fork is not safe to share)."""

    def __init__(self, path: str | Path, dataset: str) -> None:
        self.path = str(path)
        self.dataset = dataset
        self._file: Any = None
        self._pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "dataset": self.dataset, "_file": None, "_pid": None}

    def __call__(self, index: int) -> Image.Image:
        if self._file is None or self._pid != os.getpid():
            self._file = require_h5py(self.dataset).File(self.path, "r")
            self._pid = os.getpid()
        return to_rgb(Image.fromarray(np.asarray(self._file["x"][index], dtype=np.uint8)))


def read_split(folder: Path, split: str, *, dataset: str, fix: str) -> Split:
    h5py = require_h5py(dataset)
    images = folder / f"{h5file(FILES[split])}_x.h5"
    targets = folder / f"{h5file(FILES[split])}_y.h5"
    for path in (images, targets):
        if not path.is_file():
            raise ProbeError(f"dataset {dataset}: split file {path} does not exist. {fix}")
    try:
        with h5py.File(images, "r") as x, h5py.File(targets, "r") as y:
            n_images = x["x"].shape[0]
            labels = np.asarray(y["y"][:]).reshape(-1).astype(np.int64)
    except (OSError, KeyError) as err:
        raise ProbeError(
            f"dataset {dataset}: cannot read {images} and {targets} as PatchCamelyon's HDF5 "
            f"files (datasets 'x' and 'y'; {type(err).__name__}: {err}). {fix}"
        ) from None
    if n_images != len(labels):
        raise ProbeError(
            f"dataset {dataset}: {images} holds {n_images} images but {targets} {len(labels)} "
            f"labels; {fix}"
        )
    ids = [f"{FILES[split]}/{i}" for i in range(n_images)]
    return Split(
        items=list(range(n_images)), labels=labels, load=H5Images(images, dataset), ids=ids
    )


def build(*, root: str, download: bool = False, hint: str = "", **cfg: Any) -> ImageDataset:
    meta = Meta.of(cfg)
    base = Path(root).expanduser()
    require_h5py(meta.name)
    if download:  # torchvision fetches (with gdown) and unpacks whatever split is missing
        from probe.datasets.torchvision_ds import open_torchvision

        for split in FILES:
            open_torchvision(cls_name="PCAM", root=base, download=True, dataset=meta.name,
                             hint=hint, kwargs={"split": split})  # fmt: skip
    folder = require_dir(base / "pcam", dataset=meta.name, fix=hint)
    fix = (f"Place the six gunzipped camelyonpatch_level_2_split_{{train,valid,test}}_{{x,y}}.h5 "
           f"files in {folder}")  # fmt: skip
    splits = {s: read_split(folder, s, dataset=meta.name, fix=fix) for s in FILES}
    info = {"source": f"PatchCamelyon HDF5 files ({folder})"}
    return assemble(meta, splits, classes=list(CLASSES), info=info)
