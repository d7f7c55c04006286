"""Datasets backed by torchvision's dataset classes, read from `data_root`.

torchvision does the parsing of each dataset's own on-disk format; we only adapt its
samples into a `Split`. Downloads happen only when the config says `download: true`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from probe.datasets.base import ImageDataset, Split, ValSpec
from probe.errors import ProbeError


class _TorchvisionItem:
    """Index -> PIL image through the torchvision dataset; picklable for workers."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def __call__(self, index: int) -> Any:
        image, _ = self.ds[index]
        return image.convert("RGB") if hasattr(image, "convert") else image


def _labels_of(ds: Any) -> np.ndarray:
    for attr in ("targets", "_labels", "labels", "y"):
        if hasattr(ds, attr):
            return np.asarray(getattr(ds, attr), dtype=np.int64)
    return np.asarray([ds[i][1] for i in range(len(ds))], dtype=np.int64)


def open_torchvision(
    *, cls_name: str, root: Path, download: bool, dataset: str, hint: str, kwargs: dict
) -> Any:
    """Instantiate a torchvision dataset, turning its missing-file errors into a clear fix."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    try:
        return cls(root=str(root), download=download, **kwargs)
    except RuntimeError as err:  # torchvision's "Dataset not found or corrupted"
        raise ProbeError(
            f"dataset {dataset}: could not open {cls_name} under {root} ({err}). {hint}"
        ) from err


def build(
    *,
    name: str,
    tv_class: str,
    root: str,
    num_classes: int,
    metric: str,
    splits: dict[str, dict],
    download: bool = False,
    val: Any = None,
    expected_sizes: dict[str, int] | None = None,
    hint: str = "",
    **_: Any,
) -> ImageDataset:
    """Build from `splits`: a map of our split name to the torchvision constructor kwargs."""
    importlib.import_module("torchvision.datasets")
    root_path = Path(root).expanduser()
    if not download and not root_path.exists():
        raise ProbeError(
            f"dataset {name}: directory {root_path} does not exist. {hint} "
            f"Or set data_root=DIR (currently it resolves to {root_path.parent})."
        )
    out: dict[str, Split] = {}
    classes = None
    for split, kwargs in splits.items():
        ds = open_torchvision(
            cls_name=tv_class,
            root=root_path,
            download=download,
            dataset=name,
            hint=hint,
            kwargs=dict(kwargs or {}),
        )
        labels = _labels_of(ds)
        out[split] = Split(
            items=list(range(len(labels))),
            labels=labels,
            load=_TorchvisionItem(ds),
            ids=[f"{split}/{i}" for i in range(len(labels))],
        )
        classes = classes or list(getattr(ds, "classes", []) or []) or None
    return ImageDataset(
        name=name,
        num_classes=num_classes,
        metric=metric,
        splits=out,
        val=ValSpec.from_cfg(val),
        classes=classes,
        expected_sizes=dict(expected_sizes) if expected_sizes else None,
    )
