"""Fakes for the CLIP paper's suite (issue 26): MNIST, FER2013, STL-10, EuroSAT, RESISC45 and
GTSRB, each in the layout its archive (or torchvision's download) unpacks to. See `fakes`."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from fakes import Fake, write_image

FER_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


def _idx(path: Path, array: np.ndarray) -> None:
    """An IDX file as MNIST ships it: magic (0, 0, uint8 code 8, ndim), big-endian dims, data."""
    head = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def make_mnist(data_root: Path) -> Fake:
    raw = data_root / "mnist" / "MNIST" / "raw"
    rng = np.random.default_rng(0)
    labels: dict[str, dict[str, int]] = {}
    for split, prefix, n in (("train", "train", 12), ("test", "t10k", 6)):
        ys = np.array([(7, 1, 4)[i % 3] for i in range(n)], dtype=np.uint8)  # 3 of the 10 digits
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 8, 8), dtype=np.uint8))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", ys)
        labels[split] = {f"{split}/{i}": int(y) for i, y in enumerate(ys)}
    return Fake(labels, classes={0: "0 - zero", 7: "7 - seven"})


def make_fer2013(data_root: Path) -> Fake:
    """fer2013/fer2013.csv (emotion, pixels, Usage), usages interleaved as in the real file."""
    folder = data_root / "fer2013" / "fer2013"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    lines = ["emotion,pixels,Usage"]
    labels: dict[str, dict[str, int]] = {s: {} for s in FER_USAGE}
    order = ["train", "val", "train", "test", "train"] * 6  # 18 train, 6 val, 6 test
    for row, split in enumerate(order):
        emotion = (0, 3, 6)[row % 3]
        pixels = " ".join(map(str, rng.integers(0, 256, 48 * 48)))
        lines.append(f'{emotion},"{pixels}",{FER_USAGE[split]}')
        labels[split][f"{split}/{row}"] = emotion
    (folder / "fer2013.csv").write_text("\n".join(lines) + "\n")
    return Fake(labels, classes={0: "angry", 6: "neutral"})


def make_stl10(data_root: Path) -> Fake:
    """stl10_binary/ as the archive unpacks: column-major 3 x 96 x 96 images, 1-based labels,
    ten folds of train indices."""
    folder = data_root / "stl10" / "stl10_binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    labels: dict[str, dict[str, int]] = {}
    for split, n in (("train", 10), ("test", 6)):
        ys = np.array([(i * 2) % 3 for i in range(n)], dtype=np.uint8)
        rng.integers(0, 256, n * 3 * 96 * 96, dtype=np.uint8).tofile(folder / f"{split}_X.bin")
        (ys + 1).tofile(folder / f"{split}_y.bin")
        labels[split] = {f"{split}/{i}": int(y) for i, y in enumerate(ys)}
    (folder / "unlabeled_X.bin").write_bytes(b"")  # checked for, never read by the probe
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    folds = [" ".join(str((k + j) % 10) for j in range(0, 10, 2)) for k in range(10)]
    (folder / "fold_indices.txt").write_text("\n".join(folds) + "\n")
    return Fake(labels, classes={0: "airplane", 2: "car"})


def make_eurosat(data_root: Path) -> Fake:
    """eurosat/2750/CLASS/CLASS_K.jpg (torchvision's layout); 5 per class, 2 + 2 drawn."""
    base = data_root / "eurosat" / "eurosat" / "2750"
    classes = ["SeaLake", "AnnualCrop", "Forest"]  # labels follow sorted names
    every: dict[str, int] = {}
    for c in classes:
        for k in range(1, 6):
            write_image(base / c / f"{c}_{k}.jpg", 100 * len(c) + k)
            every[f"eurosat/2750/{c}/{c}_{k}.jpg"] = sorted(classes).index(c)
    overrides = ["dataset.train_per_class=2", "dataset.test_per_class=2"]
    return Fake({"all": every}, overrides=overrides, classes={0: "AnnualCrop", 2: "SeaLake"},
                per_class={"train": 2, "test": 2})  # fmt: skip


def make_resisc45(data_root: Path) -> Fake:
    """NWPU-RESISC45/CLASS/CLASS_NNN.jpg as the rar unpacks; 6 per class, 2 + 3 drawn."""
    base = data_root / "resisc45" / "NWPU-RESISC45"
    classes = ["wetland", "airplane", "basketball_court"]
    every: dict[str, int] = {}
    for c in classes:
        for k in range(1, 7):
            write_image(base / c / f"{c}_{k:03d}.jpg", 10 * len(c) + k)
            every[f"{c}/{c}_{k:03d}.jpg"] = sorted(classes).index(c)
    overrides = ["dataset.train_per_class=2", "dataset.test_per_class=3"]
    return Fake({"all": every}, overrides=overrides, classes={0: "airplane", 2: "wetland"},
                per_class={"train": 2, "test": 3})  # fmt: skip


def make_gtsrb(data_root: Path) -> Fake:
    """gtsrb/GTSRB/Training/000NN/*.ppm and Final_Test/Images/*.ppm with GT-final_test.csv
    (semicolon-separated, as GTSRB_Final_Test_GT.zip holds it)."""
    base = data_root / "gtsrb" / "gtsrb"
    labels: dict[str, dict[str, int]] = {"train": {}, "test": {}}
    for c in range(3):
        for k in range(4):
            rel = f"GTSRB/Training/{c:05d}/{k:05d}_{c:05d}.ppm"
            write_image(base / rel, 10 * c + k, fmt="PPM")
            labels["train"][f"gtsrb/{rel}"] = c
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for k in range(6):
        name, c = f"{k:05d}.ppm", (2 * k + 1) % 3
        write_image(base / "GTSRB" / "Final_Test" / "Images" / name, 100 + k, fmt="PPM")
        rows.append(f"{name};8;8;1;1;7;7;{c}")
        labels["test"][f"gtsrb/GTSRB/Final_Test/Images/{name}"] = c
    (base / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    return Fake(labels)
