"""SUN397 with the official partition lists (docs/protocol.md section 3: partition 01).

torchvision's `SUN397` has no train/test split, so we read the official `Partitions/` files:
`ClassName.txt` (lines like `/a/abbey`) fixes the class order, `Training_01.txt` and
`Testing_01.txt` list 50 images per class each (lines like `/a/abbey/sun_aaalbzqrimafwbiv.jpg`,
relative to the `SUN397/` image folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probe.core.errors import ProbeError
from probe.datasets.base import ImageDataset, Split
from probe.datasets.common import (
    Meta,
    assemble,
    file_split,
    first_existing,
    require_dir,
    require_file,
)

LISTS = {"train": "Training_{:02d}.txt", "test": "Testing_{:02d}.txt"}


def _lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def build(*, root: str, partition: int = 1, hint: str = "", **cfg: Any) -> ImageDataset:
    meta = Meta.of(cfg)
    base = Path(root).expanduser()
    images = require_dir(base / "SUN397", dataset=meta.name, fix=hint)
    part_dir = first_existing([images / "Partitions", base / "Partitions"]) or images
    fix = (
        f"Unzip the official Partitions.zip into {images / 'Partitions'} "
        "(ClassName.txt, Training_01.txt, Testing_01.txt, ...)."
    )
    class_file = first_existing([part_dir / "ClassName.txt", images / "ClassName.txt"])
    class_file = class_file or require_file(part_dir / "ClassName.txt", dataset=meta.name, fix=fix)
    classes = [c.strip("/") for c in _lines(class_file)]
    index = {c: i for i, c in enumerate(classes)}
    splits: dict[str, Split] = {}
    for split, pattern in LISTS.items():
        listing = require_file(part_dir / pattern.format(partition), dataset=meta.name, fix=fix)
        paths, labels = [], []
        for line in _lines(listing):
            rel = line.lstrip("/")
            cls = rel.rsplit("/", 1)[0]
            if cls not in index:
                raise ProbeError(
                    f"dataset {meta.name}: {listing} lists {line!r}, whose class {cls!r} is not "
                    f"in {class_file}; use the ClassName.txt that came with the partitions"
                )
            paths.append(images / rel)
            labels.append(index[cls])
        splits[split] = file_split(paths, labels, root=images, dataset=meta.name)
    info = {"source": f"SUN397 partition {partition:02d} ({part_dir})"}
    return assemble(meta, splits, classes=classes, info=info)
