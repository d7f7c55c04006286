"""Image folders: `root/{train,test[,val]}/CLASS/IMAGE` (and the custom readers built on it).

The generic source for any dataset a user has as class folders, and the layout ImageNet is
usually kept in on clusters (`train/` and `val/` sorted into wnid folders). Classes are the
sorted folder names of the train split, so labels match torchvision's `ImageFolder`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.core.walk import Walked, identity, repeated, walk_files
from probe.core.walk import above as walk_above
from probe.datasets.base import ImageDataset, Split
from probe.datasets.common import IMAGE_SUFFIXES, Meta, assemble, file_split, require_dir

log = logging.getLogger(__name__)
DEFAULT_FOLDERS = {"train": "train", "val": "val", "test": "test"}


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def walk_images(folder: Path, *, dataset: str = "") -> Walked:
    """Image files below `folder` (recursively), sorted so every run sees the same order: each
    real file once, each real folder once, links into a folder already walked not followed
    (`probe.core.walk`: a link to `.` or `..` neither hangs nor repeats images)."""
    walked = walk_files(folder, keep=_is_image, regular=True)
    where = f"dataset {dataset}: " if dataset else ""
    if walked.loops:
        log.warning("%s%d folder link(s) under %s lead into a folder already walked (a loop or a "
                    "second name for it), not followed: %s", where, len(walked.loops), folder,
                    ", ".join(walked.loops[:3]))  # fmt: skip
    if walked.repeats:
        log.warning("%s%d file(s) under %s are second names of a file already listed (a link), "
                    "listed once: %s", where, len(walked.repeats), folder,
                    ", ".join(f"{a} = {b}" for a, b in walked.repeats[:3]))  # fmt: skip
    return walked


def list_images(folder: Path) -> list[str]:
    """`walk_images`' files."""
    return walk_images(folder).files


def class_folders(split_dir: Path, *, dataset: str) -> list[str]:
    above = walk_above(split_dir)
    classes = []
    for p in sorted(split_dir.iterdir()):
        if not p.is_dir() or p.name.startswith("."):
            continue
        if identity(p) in above:
            raise ProbeError(
                f"dataset {dataset}: class folder {p} is a link to {os.path.realpath(p)}, which "
                f"holds {split_dir} itself (a loop); remove the link"
            )
        classes.append(p.name)
    if not classes:
        raise ProbeError(
            f"dataset {dataset}: {split_dir} has no class folders; put each class's images in "
            f"{split_dir}/CLASS_NAME/"
        )
    return classes


@dataclass
class SplitFiles:
    """One split's image files, labels and file identities (device, inode)."""

    paths: list[str]
    labels: list[int]
    ids: np.ndarray  # (n, 2) uint64


def read_split(split_dir: Path, classes: list[str], *, root: Path, dataset: str) -> SplitFiles:
    """One split's files; an empty or unknown class folder, or one file in two classes (two
    names for it, links), is an error."""
    index = {c: i for i, c in enumerate(classes)}
    paths: list[str] = []
    labels: list[int] = []
    ids = []
    for name in class_folders(split_dir, dataset=dataset):
        if name not in index:
            raise ProbeError(
                f"dataset {dataset}: class folder {split_dir / name} is not among the train "
                f"classes ({len(classes)} folders under the train split); rename or remove it"
            )
        walked = walk_images(split_dir / name, dataset=dataset)
        if not walked.files:
            raise ProbeError(
                f"dataset {dataset}: class folder {split_dir / name} holds no images "
                f"({', '.join(IMAGE_SUFFIXES)}); add its images or remove the folder"
            )
        paths += walked.files
        labels += [index[name]] * len(walked.files)
        ids.append(walked.identities())
    out = SplitFiles(paths, labels, np.concatenate(ids))
    twice = repeated(out.ids)  # the walks dropped repeats within a class: these cross classes
    if twice:
        later, first = twice[0]
        raise ProbeError(
            f"dataset {dataset}: {paths[first]} and {paths[later]} are one file (a link) in two "
            f"class folders ({len(twice)} such files); an image has one class: remove the links"
        )
    return out


def read_class_folders(
    split_dir: Path, classes: list[str], *, root: Path, dataset: str
) -> tuple[list[str], list[int]]:
    """(paths, labels) of one split (`read_split`)."""
    files = read_split(split_dir, classes, root=root, dataset=dataset)
    return files.paths, files.labels


def refuse_shared(files: dict[str, SplitFiles], *, dataset: str) -> None:
    """One file in two splits (links, or two splits' folders that are one) would score the
    model on an image it was trained (or had C chosen) on: refused, naming both names."""
    names = list(files)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = repeated(np.concatenate([files[a].ids, files[b].ids]))
            if both:
                later, first = both[0]
                raise ProbeError(
                    f"dataset {dataset}: {files[a].paths[first]} ({a}) and "
                    f"{files[b].paths[later - len(files[a].paths)]} ({b}) are one file, in two "
                    f"splits ({len(both)} such files); remove the links or point the split "
                    "folders (dataset.folders) at different folders"
                )


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
    files = {split: read_split(folder, classes, root=root_path, dataset=meta.name)
             for split, folder in dirs.items() if split != "val" or folder.is_dir()}  # fmt: skip
    refuse_shared(files, dataset=meta.name)
    splits: dict[str, Split] = {
        split: file_split(f.paths, f.labels, root=root_path, dataset=meta.name)
        for split, f in files.items()
    }
    return assemble(meta, splits, classes=classes, info={"source": f"image folders {root_path}"})
