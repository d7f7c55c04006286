"""Birdsnap: the official test list defines test, the rest of what the user has is train.

Birdsnap ships as URLs (`images.txt`) and many have rotted, so every copy is partial. We read
the official metadata (`species.txt`, `images.txt`, `test_images.txt`, all tab-separated with
a header line), keep the listed images that exist under `images_dir`, and record in the
result how many were listed and how many were found, per split (docs/protocol.md section 3).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from probe.core.errors import ProbeError
from probe.datasets.base import ImageDataset
from probe.datasets.common import Meta, assemble, file_split, require_dir, require_file

log = logging.getLogger(__name__)


def read_table(path: Path) -> list[dict[str, str]]:
    """A tab-separated file with a header line, as Birdsnap's metadata files are."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def build(
    *, root: str, images_dir: str = "download/images", hint: str = "", **cfg: Any
) -> ImageDataset:
    meta = Meta.of(cfg)
    base = require_dir(Path(root).expanduser() / "birdsnap", dataset=meta.name, fix=hint)
    fix = f"Place the official Birdsnap files (species.txt, images.txt, test_images.txt) in {base}."
    species = read_table(require_file(base / "species.txt", dataset=meta.name, fix=fix))
    images = read_table(require_file(base / "images.txt", dataset=meta.name, fix=fix))
    test_file = require_file(base / "test_images.txt", dataset=meta.name, fix=fix)
    test_paths = {r["path"] for r in read_table(test_file)}
    image_root = require_dir(base / images_dir, dataset=meta.name, fix=hint)
    ids = sorted(int(s["id"]) for s in species)
    index = {sid: i for i, sid in enumerate(ids)}
    names = {int(s["id"]): s["common"] for s in species}
    listed = {"train": 0, "test": 0}
    found: dict[str, tuple[list[Path], list[int]]] = {"train": ([], []), "test": ([], [])}
    for row in sorted(images, key=lambda r: r["path"]):
        split = "test" if row["path"] in test_paths else "train"
        listed[split] += 1
        path = image_root / row["path"]
        if path.is_file():
            sid = int(row["species_id"])
            if sid not in index:
                raise ProbeError(
                    f"dataset {meta.name}: images.txt gives {row['path']} species {sid}, which "
                    "species.txt lacks; use the metadata files of one Birdsnap release"
                )
            found[split][0].append(path)
            found[split][1].append(index[sid])
    counts = {s: len(found[s][0]) for s in found}
    if counts["test"] < len(test_paths):
        log.warning(
            "%s: %d of %d official test images found", meta.name, counts["test"], len(test_paths)
        )
    splits = {
        s: file_split(p, y, root=image_root, dataset=meta.name) for s, (p, y) in found.items()
    }
    info = {
        "source": f"Birdsnap metadata in {base}, images in {image_root}",
        "listed": listed,
        "found": counts,
        "missing": {s: listed[s] - counts[s] for s in listed},
    }
    return assemble(meta, splits, classes=[names[i] for i in ids], info=info)
