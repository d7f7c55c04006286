"""Datasets backed by torchvision's dataset classes, read from `data_root`.

torchvision parses each dataset's own annotation format (split files, .mat files, pickles);
we take its list of (file, label) pairs and read the files ourselves, so every image gets the
same full-decode check and a stable id (its path relative to the dataset root). Datasets held
in memory (CIFAR) are read from torchvision's arrays. Downloads happen only when the config
says `download: true`.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from probe.core.errors import ProbeError
from probe.core.images import to_rgb
from probe.datasets.base import ImageDataset, Split
from probe.datasets.common import Meta, assemble, file_split, require_root

# torchvision's private attributes holding the file list, per class family, tried in order.
PAIR_ATTRS = ("samples", "_samples")  # lists of (path, label)
FILE_ATTRS = (("_image_files", "_labels"), ("_images", "_labels"))  # paths + labels


class ArrayImages:
    """Index -> PIL image from an in-memory HxWxC uint8 array (CIFAR); picklable."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data

    def __call__(self, index: int) -> Image.Image:
        return to_rgb(Image.fromarray(self.data[index]))


class TorchvisionItem:
    """Index -> PIL image through the torchvision dataset itself (fallback); picklable."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def __call__(self, index: int) -> Any:
        image, _ = self.ds[index]
        return to_rgb(image) if isinstance(image, Image.Image) else image


def open_torchvision(
    *, cls_name: str, root: Path, download: bool, dataset: str, hint: str, kwargs: dict
) -> Any:
    """Instantiate a torchvision dataset, turning its missing-file errors into a clear fix."""
    tvd = importlib.import_module("torchvision.datasets")
    cls = getattr(tvd, cls_name, None)
    if cls is None:
        raise ProbeError(f"dataset {dataset}: torchvision has no dataset class {cls_name!r}")
    if "download" in inspect.signature(cls).parameters:  # ImageNet has no download
        kwargs = {**kwargs, "download": download}
    try:
        return cls(root=str(root), **kwargs)
    except (RuntimeError, FileNotFoundError, KeyError, ValueError) as err:
        raise ProbeError(
            f"dataset {dataset}: could not open {cls_name} under {root} "
            f"({type(err).__name__}: {err}). {hint}"
        ) from err
    except OSError as err:  # a failed download (no network) or an unreadable file
        raise ProbeError(
            f"dataset {dataset}: {cls_name} under {root} failed ({type(err).__name__}: {err}). "
            f"{hint} Without network, place the files there and set dataset.download=false."
        ) from err


def to_split(ds: Any, *, split: str, root: Path, dataset: str) -> Split:
    """A torchvision dataset as a Split: its files if it lists them, else its arrays."""
    for attr in PAIR_ATTRS:
        if hasattr(ds, attr):
            pairs = getattr(ds, attr)
            paths, labels = [p for p, _ in pairs], [int(t) for _, t in pairs]
            return file_split(paths, labels, root=root, dataset=dataset)
    for files, labels in FILE_ATTRS:
        if hasattr(ds, files) and hasattr(ds, labels):
            paths, ys = getattr(ds, files), getattr(ds, labels)
            return file_split(paths, ys, root=root, dataset=dataset)
    if hasattr(ds, "data") and hasattr(ds, "targets"):
        data, labels = np.asarray(ds.data), np.asarray(ds.targets)
        ids = [f"{split}/{i}" for i in range(len(labels))]
        return Split(items=list(range(len(labels))), labels=labels, load=ArrayImages(data), ids=ids)
    labels = np.asarray([ds[i][1] for i in range(len(ds))], dtype=np.int64)
    ids = [f"{split}/{i}" for i in range(len(labels))]
    return Split(items=list(range(len(labels))), labels=labels, load=TorchvisionItem(ds), ids=ids)


def _class_name(c: Any) -> str:
    return c if isinstance(c, str) else ", ".join(map(str, c))  # ImageNet: synonym tuples


def build(
    *,
    tv_class: str,
    root: str,
    splits: dict[str, dict],
    download: bool = False,
    hint: str = "",
    **cfg: Any,
) -> ImageDataset:
    """Build from `splits`: a map of our split name to the torchvision constructor kwargs."""
    meta = Meta.of(cfg)
    root_path = require_root(root, dataset=meta.name, hint=hint, download=download)
    out: dict[str, Split] = {}
    classes = None
    for split, kwargs in splits.items():
        ds = open_torchvision(
            cls_name=tv_class,
            root=root_path,
            download=download,
            dataset=meta.name,
            hint=hint,
            kwargs=dict(kwargs or {}),
        )
        out[split] = to_split(ds, split=split, root=root_path, dataset=meta.name)
        classes = classes or [_class_name(c) for c in getattr(ds, "classes", []) or []] or None
    return assemble(meta, out, classes=classes, info={"source": f"torchvision.{tv_class}"})
