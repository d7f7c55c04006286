"""CUB-200-2011 with its official train/test split (5,994 / 5,794; docs/protocol.md section 3).

The archive `CUB_200_2011.tgz` unpacks to `CUB_200_2011/` with four space-separated lists
and the images: `images.txt` (`image_id relative/path.jpg`), `image_class_labels.txt`
(`image_id class_id`), `train_test_split.txt` (`image_id 1` for train, `0` for test),
`classes.txt` (`class_id 001.Black_footed_Albatross`) and `images/NNN.Name/*.jpg`. Class ids
are 1-based in the files and 0-based here, in `classes.txt` order. We read the lists rather
than the folders because the split exists only in `train_test_split.txt`, and a list that
disagrees with another (an id missing from one) is an error naming both files: a silently
dropped image would change the split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probe.core.errors import ProbeError
from probe.datasets.base import ImageDataset
from probe.datasets.common import (
    Meta,
    assemble,
    file_split,
    require_dir,
    require_file,
)

LISTS = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")


def read_pairs(path: Path, *, dataset: str) -> dict[str, str]:
    """`id value` lines (the value may hold spaces: class names do not, paths might)."""
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        key, _, value = line.strip().partition(" ")
        if not value or key in out:
            why = "has no value" if not value else f"repeats id {key}"
            raise ProbeError(
                f"dataset {dataset}: {path} line {number} {why} ({line.strip()!r}); use the "
                "lists of one unmodified CUB_200_2011.tgz"
            )
        out[key] = value.strip()
    return out


def build(*, root: str, hint: str = "", **cfg: Any) -> ImageDataset:
    meta = Meta.of(cfg)
    base = Path(root).expanduser()
    usual = base / "CUB_200_2011"  # the archive's own folder; or root may be that folder
    inside = not usual.is_dir() and (base / "images.txt").is_file()
    folder = require_dir(base if inside else usual, dataset=meta.name, fix=hint)
    fix = (
        f"Unpack CUB_200_2011.tgz into {base} so that {usual} holds {', '.join(LISTS)} "
        "and images/NNN.Name/*.jpg"
    )
    paths, labels, split_of, classes = (
        read_pairs(require_file(folder / name, dataset=meta.name, fix=fix), dataset=meta.name)
        for name in LISTS
    )
    class_ids = sorted(classes, key=int)
    index = {cid: i for i, cid in enumerate(class_ids)}
    images = require_dir(folder / "images", dataset=meta.name, fix=fix)
    found: dict[str, tuple[list[Path], list[int]]] = {"train": ([], []), "test": ([], [])}
    for image_id in sorted(paths, key=int):
        for other, table in (("image_class_labels.txt", labels), ("train_test_split.txt",
                                                                  split_of)):  # fmt: skip
            if image_id not in table:
                raise ProbeError(
                    f"dataset {meta.name}: image id {image_id} of {folder / 'images.txt'} is "
                    f"not in {folder / other}; use the lists of one unmodified CUB_200_2011.tgz"
                )
        if labels[image_id] not in index or split_of[image_id] not in ("0", "1"):
            raise ProbeError(
                f"dataset {meta.name}: image id {image_id} has class {labels[image_id]!r} and "
                f"split flag {split_of[image_id]!r}; classes.txt lists ids 1..{len(class_ids)} "
                "and train_test_split.txt flags are 1 (train) or 0 (test)"
            )
        split = "train" if split_of[image_id] == "1" else "test"
        found[split][0].append(images / paths[image_id])
        found[split][1].append(index[labels[image_id]])
    splits = {s: file_split(p, y, root=images, dataset=meta.name) for s, (p, y) in found.items()}
    info = {"source": f"CUB-200-2011 official split ({folder})"}
    return assemble(meta, splits, classes=[classes[c] for c in class_ids], info=info)
