"""Image folders: `root/{train,test[,val]}/CLASS/IMAGE` (and the custom readers built on it).

The generic source for any dataset a user has as class folders, and the layout ImageNet is
usually kept in on clusters (`train/` and `val/` sorted into wnid folders). Classes are the
sorted folder names of the train split, so labels match torchvision's `ImageFolder`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from probe.core.errors import ProbeError
from probe.datasets.base import ImageDataset, Split
from probe.datasets.common import IMAGE_SUFFIXES, Meta, assemble, file_split, require_dir

DEFAULT_FOLDERS = {"train": "train", "val": "val", "test": "test"}


def list_images(folder: Path) -> list[str]:
    """Image files below `folder` (recursively), sorted so every run sees the same order."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        out.extend(
            os.path.join(dirpath, f)
            for f in sorted(filenames)
            if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith(".")
        )
    return out


def class_folders(split_dir: Path, *, dataset: str) -> list[str]:
    classes = sorted(
        p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not classes:
        raise ProbeError(
            f"dataset {dataset}: {split_dir} has no class folders; put each class's images in "
            f"{split_dir}/CLASS_NAME/"
        )
    return classes


def read_class_folders(
    split_dir: Path, classes: list[str], *, root: Path, dataset: str
) -> tuple[list[str], list[int]]:
    """(paths, labels) of one split; an empty or unknown class folder is an error."""
    index = {c: i for i, c in enumerate(classes)}
    paths: list[str] = []
    labels: list[int] = []
    for name in class_folders(split_dir, dataset=dataset):
        if name not in index:
            raise ProbeError(
                f"dataset {dataset}: class folder {split_dir / name} is not among the train "
                f"classes ({len(classes)} folders under the train split); rename or remove it"
            )
        files = list_images(split_dir / name)
        if not files:
            raise ProbeError(
                f"dataset {dataset}: class folder {split_dir / name} holds no images "
                f"({', '.join(IMAGE_SUFFIXES)}); add its images or remove the folder"
            )
        paths += files
        labels += [index[name]] * len(files)
    return paths, labels


def build(
    *,
    root: str | None = None,
    folders: dict[str, str] | None = None,
    hint: str = "",
    **cfg: Any,
) -> ImageDataset:
    """`folders` maps our split names to sub-folders of `root`; `val` is used if present."""
    meta = Meta.of(cfg)
    if not root:
        raise ProbeError(
            f"dataset {meta.name}: no directory given; set dataset.root=DIR "
            "(DIR/train/CLASS/*.jpg, DIR/test/CLASS/*.jpg, optionally DIR/val/CLASS/*.jpg)"
        )
    root_path = Path(root).expanduser()
    fix = hint or "Expected DIR/train/CLASS/IMAGE and DIR/test/CLASS/IMAGE; set dataset.root=DIR."
    require_dir(root_path, dataset=meta.name, fix=fix)
    folders = dict(folders or DEFAULT_FOLDERS)
    dirs = {s: root_path / f for s, f in folders.items()}
    for needed in ("train", "test"):
        require_dir(dirs[needed], dataset=meta.name, fix=fix)
    classes = class_folders(dirs["train"], dataset=meta.name)
    splits: dict[str, Split] = {}
    for split, folder in dirs.items():
        if split == "val" and not folder.is_dir():
            continue
        paths, labels = read_class_folders(folder, classes, root=root_path, dataset=meta.name)
        splits[split] = file_split(paths, labels, root=root_path, dataset=meta.name)
    return assemble(meta, splits, classes=classes, info={"source": f"image folders {root_path}"})
