"""KITTI Distance: how far the closest vehicle is, in KITTI object-detection training images.

The CLIP paper's Table 9 lists KITTI with 4 classes, 6,770 train and 711 test images, scored
by accuracy; CLIP_benchmark runs it as VTAB's `closest_vehicle_distance` task on TFDS
`kitti:3.3.0` (LAION-AI/CLIP_benchmark 48de38c, `clip_benchmark/datasets/kitti.py` lines
90-103 and 172), whose class names are CLIP's own prompts for KITTI (`en_classnames.json`,
`kitti_closest_vehicle_distance`). We rebuild both parts from the files:

- **The label** (VTAB, google-research/task_adaptation d7630d3, `task_adaptation/data/kitti.py`
  lines 90-103): the smallest depth `z` (the camera-frame location's third value, metres) of
  the image's vehicles, `Car`, `Van` or `Truck` (TFDS type ids 0-2; `DontCare` rows are not
  objects), or 1000 without one; then the largest i with `THRESHOLDS[i] < z`: up to 8 m is
  class 0, up to 20 m class 1, up to 999 m class 2, no vehicle class 3.
- **The splits** (TFDS, tensorflow/datasets 33ac20e,
  `tensorflow_datasets/datasets/kitti/kitti_dataset_builder.py`, `_build_splits`): the
  labelled training images only (the benchmark's test images have no labels), grouped by the
  drive (video) each comes from through the devkit's `mapping/train_rand.txt` and
  `mapping/train_mapping.txt`; 10% of the drives are test and as many others validation,
  drawn with numpy's legacy generator seeded 123, so no drive straddles two splits: 6,347 / 423 /
  711. Table 9's 6,770 train images are TFDS train + validation, the probe's final fit.

torchvision's `Kitti` gives the layout (`Kitti/raw/training/{image_2,label_2}`) but neither the
split nor the label, so the files are read here.
"""

from __future__ import annotations

import bisect
import collections
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.datasets.base import ImageDataset
from probe.datasets.common import Meta, assemble, file_split, require_dir

VEHICLES = ("Car", "Van", "Truck")
THRESHOLDS = (-100.0, 8.0, 20.0, 999.0)
NO_VEHICLE = 1000.0
CLASSES = ("closest vehicle within 8 m", "closest vehicle 8 to 20 m",
           "closest vehicle beyond 20 m", "no vehicle")  # fmt: skip
SPLIT_SEED = 123  # TFDS `_build_splits`: np.random.seed(seed=123)
HELD_OUT_PERCENT = 10  # of the drives, for test and then for validation
MAPPING = ("mapping/train_rand.txt", "mapping/train_mapping.txt")
DEVKIT_ZIP = "devkit_object.zip"


def distance_class(label_file: Path, *, dataset: str) -> int:
    """The bucket of the closest vehicle's depth in one `label_2/NNNNNN.txt` (VTAB's rule)."""
    depths = []
    for number, line in enumerate(label_file.read_text().splitlines(), 1):
        fields = line.split()
        if not fields or fields[0] == "DontCare":
            continue
        if len(fields) < 15:
            raise ProbeError(
                f"dataset {dataset}: {label_file} line {number} has {len(fields)} fields, not "
                "KITTI's 15 (type ... x y z rotation_y); use the unmodified data_object_label_2.zip"
            )
        if fields[0] in VEHICLES:
            depths.append(float(fields[13]))
    label = bisect.bisect_left(THRESHOLDS, min(depths, default=NO_VEHICLE)) - 1
    if label < 0:
        raise ProbeError(
            f"dataset {dataset}: {label_file} puts a vehicle at depth {min(depths)} m, below "
            f"{THRESHOLDS[0]}; use the unmodified data_object_label_2.zip"
        )
    return label


def read_mapping(raw: Path, *, dataset: str) -> tuple[str, str]:
    """The devkit's two mapping files, from `raw/mapping/` or the zip left in `raw/`."""
    folder = [raw / name for name in MAPPING]
    if all(p.is_file() for p in folder):
        return folder[0].read_text(), folder[1].read_text()
    archive = raw / DEVKIT_ZIP
    if archive.is_file():
        with zipfile.ZipFile(archive) as z:
            names = set(z.namelist())
            if all(name in names for name in MAPPING):
                return tuple(io.TextIOWrapper(z.open(n), encoding="utf-8").read() for n in MAPPING)
    missing = next(p for p in folder if not p.is_file())
    raise ProbeError(
        f"dataset {dataset}: split file {missing} does not exist (nor {archive}). The split by "
        f"drive needs the object devkit: unzip {DEVKIT_ZIP} into {raw} (giving {raw}/mapping/"
        f"train_rand.txt and train_mapping.txt), or place {DEVKIT_ZIP} itself there"
    )


def drive_splits(rand: str, mapping: str, *, dataset: str) -> dict[str, list[int]]:
    """Image ids per split, by TFDS's `_build_splits`: drives in the order of first image."""
    lines = mapping.splitlines()
    try:
        rows = [int(x.strip()) - 1 for x in rand.split(",")]  # 1-based line numbers
        drives = [lines[r].split(" ")[1] for r in rows]
    except (ValueError, IndexError):
        raise ProbeError(
            f"dataset {dataset}: the devkit's {MAPPING[0]} and {MAPPING[1]} do not agree (a line "
            "number out of range, or not 'DATE DRIVE FRAME' lines); use one devkit_object.zip"
        ) from None
    by_drive: dict[str, list[int]] = collections.defaultdict(list)
    for image_id, drive in enumerate(drives):
        by_drive[drive].append(image_id)
    rng = np.random.RandomState(SPLIT_SEED)  # the legacy global generator TFDS seeds
    n = max(1, HELD_OUT_PERCENT * len(by_drive) // 100)
    test = {str(d) for d in rng.choice(sorted(by_drive), n, replace=False)}
    val = {str(d) for d in rng.choice(sorted(set(by_drive) - test), n, replace=False)}
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for drive, ids in by_drive.items():
        out["test" if drive in test else "val" if drive in val else "train"].extend(ids)
    return {split: sorted(ids) for split, ids in out.items()}


def build(*, root: str, hint: str = "", **cfg: Any) -> ImageDataset:
    meta = Meta.of(cfg)
    raw = require_dir(Path(root).expanduser() / "Kitti" / "raw", dataset=meta.name, fix=hint)
    images = raw / "training" / "image_2"
    labels_dir = raw / "training" / "label_2"
    fix = (f"Unzip data_object_image_2.zip and data_object_label_2.zip into {raw}, giving "
           f"{images}/NNNNNN.png and {labels_dir}/NNNNNN.txt")  # fmt: skip
    require_dir(images, dataset=meta.name, fix=fix)
    require_dir(labels_dir, dataset=meta.name, fix=fix)
    ids = drive_splits(*read_mapping(raw, dataset=meta.name), dataset=meta.name)
    splits = {}
    for split, image_ids in ids.items():
        paths, labels = [], []
        for i in image_ids:
            image, label_file = images / f"{i:06d}.png", labels_dir / f"{i:06d}.txt"
            for path in (image, label_file):
                if not path.is_file():
                    raise ProbeError(
                        f"dataset {meta.name}: {path} does not exist, but the devkit's mapping "
                        f"lists image {i:06d} (every training image is in a split). {fix}"
                    )
            paths.append(image)
            labels.append(distance_class(label_file, dataset=meta.name))
        splits[split] = file_split(paths, labels, root=raw, dataset=meta.name)
    info = {
        "source": f"KITTI object training images by drive (TFDS kitti split, {raw})",
        "class_counts": {
            s: np.bincount(sp.labels, minlength=4).tolist() for s, sp in splits.items()
        },
    }
    return assemble(meta, splits, classes=list(CLASSES), info=info)
