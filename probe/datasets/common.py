"""Helpers every image-dataset family shares: file checks, the image loader, assembling splits.

Corrupt images are caught where decoding happens anyway: the loader fully decodes every
image (PIL's `Image.open` alone is lazy and would let a truncated JPEG through) and stops
extraction with the file's path and the fix. A pre-scan would cost a second full decode of
every image on every run, and a cheap header or trailer check misses damage in the middle of
a file. Only `dataset.skip_corrupt=true` pays for a scan (`probe.datasets.corrupt`), at
build time, because a split's rows (the cache's row count and content hash) must be known
before extraction.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from probe.core.errors import ProbeError
from probe.core.images import decode
from probe.datasets.base import ImageDataset, Split, resolve_val

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
SKIP_FIX = "set dataset.skip_corrupt=true to skip unreadable images (the result lists them)"


def require_dir(path: Path, *, dataset: str, fix: str) -> Path:
    """`path` as a directory, or a ProbeError naming the dataset, the path and the fix."""
    if not path.is_dir():
        raise ProbeError(f"dataset {dataset}: directory {path} does not exist. {fix}")
    return path


def require_root(root: str | Path, *, dataset: str, hint: str, download: bool) -> Path:
    """A dataset config's `root`, which must exist unless a download may create it."""
    path = Path(root).expanduser()
    if not download and not path.exists():
        raise ProbeError(
            f"dataset {dataset}: directory {path} does not exist. {hint} "
            f"Or set data_root=DIR (currently it resolves to {path.parent})."
        )
    return path


def require_file(path: Path, *, dataset: str, fix: str) -> Path:
    if not path.is_file():
        raise ProbeError(f"dataset {dataset}: split file {path} does not exist. {fix}")
    return path


def first_existing(candidates: Sequence[Path]) -> Path | None:
    return next((p for p in candidates if p.exists()), None)


class ImageFiles:
    """Relative path -> 8-bit RGB PIL image under `root` (`probe.core.images.decode`: 16-bit
    scaled, palettes expanded); picklable for DataLoader workers."""

    def __init__(self, root: str | Path, dataset: str) -> None:
        self.root = str(root)
        self.dataset = dataset

    def __call__(self, rel: str) -> Image.Image:
        path = os.path.join(self.root, rel)
        try:
            return decode(path)
        except Exception as err:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError...
            raise ProbeError(
                f"dataset {self.dataset}: cannot read image {path} ({type(err).__name__}: {err}). "
                f"Replace the file (re-download or re-extract it), or {SKIP_FIX}"
            ) from None


def relative_ids(paths: Sequence[str | Path], root: Path) -> list[str]:
    """Stable sample ids: paths relative to the dataset root, with forward slashes."""
    prefix = os.path.join(os.path.abspath(root), "")
    out = []
    for p in map(str, paths):  # a prefix cut, not relpath: ImageNet has 1.3M paths
        p = p if os.path.isabs(p) else os.path.abspath(p)
        rel = p[len(prefix) :] if p.startswith(prefix) else os.path.relpath(p, prefix)
        out.append(rel.replace(os.sep, "/"))
    return out


@dataclass
class Meta:
    """The protocol's metadata of a dataset config, shared by every family's `build`."""

    name: str
    num_classes: int | str
    metric: str
    val: Any = None
    expected_sizes: dict[str, int] | None = None
    skip_corrupt: bool = False

    @classmethod
    def of(cls, cfg: dict[str, Any]) -> Meta:
        """The shared keys of a config (other keys belong to the family and are ignored)."""
        keys = ("name", "num_classes", "metric", "val", "expected_sizes", "skip_corrupt")
        return cls(**{k: cfg[k] for k in keys if k in cfg})


def _check_not_empty(splits: dict[str, Split], *, name: str) -> None:
    for split_name, split in splits.items():
        if len(split) == 0:
            raise ProbeError(
                f"dataset {name}: the {split_name} split is empty; check dataset.root and that "
                "the images its split files list are in place (and readable)"
            )


def assemble(
    meta: Meta,
    splits: dict[str, Split],
    *,
    classes: list[str] | None = None,
    info: dict[str, Any] | None = None,
) -> ImageDataset:
    """Checks shared by all families, the optional corrupt-image skip, then the dataset."""
    info = dict(info or {})
    found = list(splits)
    val = resolve_val(meta.val, has_val="val" in splits)
    if val.source == "carve" and "val" in splits:  # an unused val split is not extracted
        log.info("%s: val is carved from train (dataset.val.source=carve)", meta.name)
        splits = {k: v for k, v in splits.items() if k != "val"}
    _check_not_empty(splits, name=meta.name)
    if meta.skip_corrupt:
        from probe.datasets.corrupt import skip_corrupt_images

        info["skipped_corrupt"] = skip_corrupt_images(splits, name=meta.name)
        _check_not_empty(splits, name=meta.name)
    num_classes = meta.num_classes
    if num_classes == "auto":
        num_classes = (
            len(classes) if classes else max(_classes_in(s.labels) for s in splits.values())
        )
    num_classes = int(num_classes)
    for split_name, split in splits.items():
        if split.labels.ndim == 2:  # multi-label: one column per class, flags not indices
            _check_columns(split.labels, num_classes, name=meta.name, split=split_name)
            continue
        lo, hi = int(split.labels.min()), int(split.labels.max())
        if lo < 0 or hi >= num_classes:
            raise ProbeError(
                f"dataset {meta.name}: {split_name} labels span {lo}..{hi} but "
                f"num_classes={num_classes}; set dataset.num_classes to the real class count"
            )
    return ImageDataset(
        name=meta.name,
        num_classes=num_classes,
        metric=meta.metric,
        splits=splits,
        val=val,
        classes=list(classes) if classes else None,
        expected_sizes=dict(meta.expected_sizes) if meta.expected_sizes else None,
        info=info,
        found=found,
    )


def _classes_in(labels: np.ndarray) -> int:
    """The class count labels imply: the largest index + 1, or a multi-label row's width."""
    return int(labels.shape[1]) if labels.ndim == 2 else int(labels.max()) + 1


def _check_columns(labels: np.ndarray, num_classes: int, *, name: str, split: str) -> None:
    if labels.shape[1] != num_classes:
        raise ProbeError(
            f"dataset {name}: {split} labels have {labels.shape[1]} columns (one per class) but "
            f"num_classes={num_classes}; set dataset.num_classes to the real class count"
        )


def file_split(
    paths: Sequence[str | Path], labels: Sequence[int], *, root: Path, dataset: str
) -> Split:
    """A split of image files under `root`, identified by their relative paths."""
    ids = relative_ids(paths, root)
    return Split(items=ids, labels=np.asarray(labels), load=ImageFiles(root, dataset), ids=ids)
