"""FER2013 with the challenge's three usages: Training / PublicTest (val) / PrivateTest (test).

The Kaggle challenge's `fer2013.csv` (in `fer2013.tar.gz`; or its copy `icml_face_data.csv`,
whose column names start with a space) holds one 48 x 48 grayscale face per row: `emotion`
(0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral), `pixels` (2,304
space-separated values) and `Usage`. torchvision's `FER2013` reads the same files in the same
place (`root/fer2013/`) but merges PublicTest and PrivateTest into one test split, and its
`train.csv` + `test.csv` layout has no test labels; so we read the csv ourselves and keep the
usages apart: Training 28,709 train, PublicTest 3,589 the official val, PrivateTest 3,589
test (the challenge's final ranking set). The CLIP paper's Table 9 sizes (32,140 / 3,574) sit
just under Training + PublicTest / PrivateTest, and its authors say they are miscounted
(openai/CLIP issue 45; docs/protocol.md section 7).
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.datasets.base import ImageDataset, Split
from probe.datasets.common import Meta, assemble, first_existing, require_dir
from probe.datasets.torchvision_ds import ArrayImages

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
FILES = ("fer2013.csv", "icml_face_data.csv")  # torchvision's precedence
SIDE = 48


def parse_pixels(text: str) -> np.ndarray:
    """Space-separated integers at C speed (a malformed value ends the array short)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "could not be read to its end"
        try:
            return np.fromstring(text, dtype=np.int64, sep=" ")
        except ValueError:
            return np.zeros(0, dtype=np.int64)


Rows = tuple[list[int], list[np.ndarray], list[int]]  # csv data-row numbers, images, labels


def read_rows(path: Path, *, dataset: str) -> dict[str, Rows]:
    """Split -> (csv data-row numbers, 48 x 48 uint8 images, labels), in file order."""
    out: dict[str, Rows] = {s: ([], [], []) for s in USAGE.values()}
    fix = "use the fer2013.csv of fer2013.tar.gz (Kaggle's FER2013 challenge) unmodified"
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        keys = {k.strip(): k for k in reader.fieldnames or []}
        missing = {"emotion", "pixels", "Usage"} - set(keys)
        if missing:
            raise ProbeError(
                f"dataset {dataset}: {path} has no column {sorted(missing)[0]!r} (found: "
                f"{', '.join(keys) or 'none'}); {fix}"
            )
        for row_no, row in enumerate(reader):
            usage, emotion = row[keys["Usage"]].strip(), row[keys["emotion"]].strip()
            pixels = parse_pixels(row[keys["pixels"]])
            ok = usage in USAGE and emotion.isdigit() and int(emotion) < len(CLASSES)
            if not ok or pixels.size != SIDE * SIDE or pixels.min() < 0 or pixels.max() > 255:
                raise ProbeError(
                    f"dataset {dataset}: {path} data row {row_no + 1} is not a 48 x 48 face with "
                    f"emotion 0-6 and Usage {'/'.join(USAGE)} (Usage={usage!r}, "
                    f"emotion={emotion!r}, {pixels.size} pixels); {fix}"
                )
            rows, images, labels = out[USAGE[usage]]
            rows.append(row_no)
            images.append(pixels.astype(np.uint8).reshape(SIDE, SIDE))
            labels.append(int(emotion))
    return out


def build(*, root: str, hint: str = "", **cfg: Any) -> ImageDataset:
    meta = Meta.of(cfg)
    folder = require_dir(Path(root).expanduser() / "fer2013", dataset=meta.name, fix=hint)
    path = first_existing([folder / name for name in FILES])
    if path is None:
        tv = (folder / "test.csv").is_file()  # torchvision's other layout: no test labels
        why = " (test.csv is there, but it has no labels)" if tv else ""
        raise ProbeError(
            f"dataset {meta.name}: split file {folder / FILES[0]} does not exist{why}. {hint}"
        )
    splits: dict[str, Split] = {}
    for split, (rows, images, labels) in read_rows(path, dataset=meta.name).items():
        data = np.stack(images) if images else np.zeros((0, SIDE, SIDE), dtype=np.uint8)
        ids = [f"{split}/{r}" for r in rows]
        splits[split] = Split(items=list(range(len(rows))), labels=np.asarray(labels),
                              load=ArrayImages(data), ids=ids)  # fmt: skip
    return assemble(meta, splits, classes=CLASSES, info={"source": f"FER2013 usages ({path})"})
