"""Tiny fake copies of every dataset, in the real on-disk layouts the readers expect.

This module holds the helpers and the layouts torchvision parses; `fakes_custom` holds the
ones our own readers parse (SUN397, Caltech-101, Birdsnap) and the generic sources;
`fakes_tasks` six datasets of the CLIP paper's suite (KITTI Distance to Rendered SST2),
`fakes_video` the video datasets as middle frames (UCF101, Kinetics-700), `fakes_clip` six
more of the CLIP paper's suite (MNIST to GTSRB).

Each `make_<config name>(data_root)` writes a few 8x8 images per class plus the dataset's real
annotation files (pickles, .mat files, split lists, json) and returns what a correct reader
must produce: the label of every sample id, per source split. Class orders are chosen so a
reader that sorts (or fails to sort) the wrong way gets the labels wrong. torchvision verifies
the md5 of some files (CIFAR, Flowers102, the ImageNet devkit); `bypass_md5` replaces only
that check with an existence check, never the loading code.
"""

from __future__ import annotations

import json
import os
import pickle
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

MD5_MODULES = ("cifar", "flowers102", "imagenet", "stl10")


def exists_only(fpath: str, md5: str | None = None) -> bool:
    return os.path.isfile(fpath)


def bypass_md5(setattr_: Callable | None = None) -> None:
    """Swap torchvision's md5 check for an existence check (monkeypatch.setattr or plain)."""
    import importlib

    for mod in MD5_MODULES:
        module = importlib.import_module(f"torchvision.datasets.{mod}")
        if setattr_ is not None:
            setattr_(module, "check_integrity", exists_only)
        else:
            module.check_integrity = exists_only


@dataclass
class Fake:
    """What a reader must yield from the fake: split -> {sample id: label}."""

    labels: dict[str, dict[str, int]]
    overrides: list[str] = field(default_factory=list)
    classes: dict[int, str] = field(default_factory=dict)  # some expected class names
    # a seeded per-class draw (labels["all"] lists every image): images per class per split
    per_class: dict[str, int] = field(default_factory=dict)

    @property
    def sizes(self) -> dict[str, int]:
        return {s: len(v) for s, v in self.labels.items()}


def write_image(path: Path, seed: int, fmt: str = "JPEG") -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def truncate(path: Path) -> None:
    """Cut an image inside its pixel data: `Image.open` (headers only) succeeds, decoding fails."""
    data = path.read_bytes()
    marker = b"\xff\xda" if data[:2] == b"\xff\xd8" else b"IDAT"  # JPEG scan / PNG data
    start = data.index(marker) + 24
    path.write_bytes(data[: start + (len(data) - start) // 2])


def _cifar(root: Path, *, folder: str, files: dict[str, int], meta: tuple[str, str], key: str):
    names = ["truck", "airplane", "cat"]  # label i is names[i], as the meta file says
    base = root / folder
    base.mkdir(parents=True)
    labels: dict[str, dict[str, int]] = {"train": {}, "test": {}}
    counters = {"train": 0, "test": 0}
    for i, (fname, n) in enumerate(files.items()):
        split = "test" if fname.startswith("test") else "train"
        ys = [(i + j) % 3 for j in range(n)]
        rng = np.random.default_rng(i)
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), key: ys}
        if key == "fine_labels":
            entry["coarse_labels"] = [0] * n
        (base / fname).write_bytes(pickle.dumps(entry))
        for y in ys:
            labels[split][f"{split}/{counters[split]}"] = y
            counters[split] += 1
    meta_name, meta_key = meta
    (base / meta_name).write_bytes(pickle.dumps({meta_key: names, "coarse_label_names": ["x"]}))
    return Fake(labels, classes={0: "truck", 2: "cat"})


def make_cifar10(data_root: Path) -> Fake:
    files = {f"data_batch_{i}": 3 for i in range(1, 6)} | {"test_batch": 6}
    return _cifar(
        data_root / "cifar10",
        folder="cifar-10-batches-py",
        files=files,
        meta=("batches.meta", "label_names"),
        key="labels",
    )


def make_cifar100(data_root: Path) -> Fake:
    return _cifar(
        data_root / "cifar100",
        folder="cifar-100-python",
        files={"train": 15, "test": 6},
        meta=("meta", "fine_label_names"),
        key="fine_labels",
    )


def make_food101(data_root: Path) -> Fake:
    base = data_root / "food101" / "food-101"
    classes = ["tacos", "apple_pie", "ramen"]  # json order; labels follow sorted names
    index = {c: i for i, c in enumerate(sorted(classes))}
    labels: dict[str, dict[str, int]] = {"train": {}, "test": {}}
    seed = 0
    for split, n in (("train", 5), ("test", 2)):
        listing = {}
        for c in classes:
            rels = [f"{c}/{1000 * (split == 'test') + k}" for k in range(n)]
            listing[c] = rels
            for rel in rels:
                write_image(base / "images" / f"{rel}.jpg", seed := seed + 1)
                labels[split][f"food-101/images/{rel}.jpg"] = index[c]
        (base / "meta").mkdir(parents=True, exist_ok=True)
        (base / "meta" / f"{split}.json").write_text(json.dumps(listing))
    return Fake(labels, classes={0: "apple_pie", 2: "tacos"})


def make_fgvc_aircraft(data_root: Path) -> Fake:
    data = data_root / "fgvc_aircraft" / "fgvc-aircraft-2013b" / "data"
    variants = ["A340-300", "737-800", "Cessna 172"]  # file order is the label order
    data.mkdir(parents=True)
    (data / "variants.txt").write_text("\n".join(variants) + "\n")
    labels: dict[str, dict[str, int]] = {}
    image_id = 1000000
    for split, n in (("train", 3), ("val", 2), ("test", 2)):
        lines, labels[split] = [], {}
        for y, v in enumerate(variants):
            for _ in range(n):
                image_id += 1
                write_image(data / "images" / f"{image_id}.jpg", image_id)
                lines.append(f"{image_id} {v}")
                labels[split][f"fgvc-aircraft-2013b/data/images/{image_id}.jpg"] = y
        (data / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
    return Fake(labels, classes={2: "Cessna 172"})


def make_dtd(data_root: Path) -> Fake:
    base = data_root / "dtd" / "dtd" / "dtd"
    classes = ["zigzagged", "banded", "dotted"]
    index = {c: i for i, c in enumerate(sorted(classes))}
    labels: dict[str, dict[str, int]] = {}
    k = 0
    (base / "labels").mkdir(parents=True)
    for split in ("train", "val", "test"):
        lines, labels[split] = [], {}
        for c in classes:
            for _ in range(2):
                k += 1
                name = f"{c}_{k:04d}.jpg"
                write_image(base / "images" / c / name, k)
                lines.append(f"{c}/{name}")
                labels[split][f"dtd/dtd/images/{c}/{name}"] = index[c]
        (base / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
    (base / "labels" / "train2.txt").write_text("banded/banded_0001.jpg\n")  # another partition
    return Fake(labels, classes={0: "banded", 2: "zigzagged"})


def make_pets(data_root: Path) -> Fake:
    base = data_root / "pets" / "oxford-iiit-pet"
    breeds = ["Abyssinian", "american_bulldog", "Bengal"]  # class ids 1, 2, 3 (species 1/2/1)
    labels: dict[str, dict[str, int]] = {}
    (base / "annotations").mkdir(parents=True)
    k = 0
    for split, n in (("trainval", 4), ("test", 2)):
        ours = "train" if split == "trainval" else "test"
        lines, labels[ours] = [], {}
        for y, breed in enumerate(breeds):
            for _ in range(n):
                k += 1
                write_image(base / "images" / f"{breed}_{k}.jpg", k)
                lines.append(f"{breed}_{k} {y + 1} {1 + (y == 1)} {k}")
                labels[ours][f"oxford-iiit-pet/images/{breed}_{k}.jpg"] = y
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return Fake(labels, classes={0: "Abyssinian", 1: "American Bulldog"})


def make_flowers102(data_root: Path) -> Fake:
    from scipy.io import savemat

    base = data_root / "flowers102" / "flowers-102"
    n_images = 18
    mat_labels = np.array([1 + (i * 7) % 3 for i in range(n_images)])  # 1-based, 3 classes
    for i in range(1, n_images + 1):
        write_image(base / "jpg" / f"image_{i:05d}.jpg", i)
    ids = np.random.default_rng(0).permutation(np.arange(1, n_images + 1))
    setid = {"trnid": np.sort(ids[:6]), "valid": np.sort(ids[6:12]), "tstid": np.sort(ids[12:])}
    savemat(base / "imagelabels.mat", {"labels": mat_labels[None, :]})
    savemat(base / "setid.mat", {k: v[None, :] for k, v in setid.items()})
    labels = {
        split: {f"flowers-102/jpg/image_{i:05d}.jpg": int(mat_labels[i - 1] - 1) for i in ids}
        for split, ids in (
            ("train", setid["trnid"]),
            ("val", setid["valid"]),
            ("test", setid["tstid"]),
        )
    }
    return Fake(labels)


def _struct(rows: list[dict]) -> np.ndarray:
    dtype = [(k, object) for k in rows[0]]
    return np.array([tuple(r.values()) for r in rows], dtype=dtype)


def make_stanford_cars(data_root: Path) -> Fake:
    from scipy.io import savemat

    base = data_root / "stanford_cars" / "stanford_cars"
    names = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"]
    (base / "devkit").mkdir(parents=True)
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array(names, dtype=object)})
    labels: dict[str, dict[str, int]] = {}
    for split, n, mat in (
        ("train", 9, base / "devkit" / "cars_train_annos.mat"),
        ("test", 6, base / "cars_test_annos_withlabels.mat"),
    ):
        rows, labels[split] = [], {}
        for i in range(1, n + 1):
            fname, y = f"{i:05d}.jpg", (i * 2) % 3
            write_image(base / f"cars_{split}" / fname, i + 100 * (split == "test"))
            box = {f"bbox_{c}": 1 for c in ("x1", "y1", "x2", "y2")}
            rows.append({**box, "class": y + 1, "fname": fname})
            labels[split][f"stanford_cars/cars_{split}/{fname}"] = y
        savemat(mat, {"annotations": _struct(rows)})
    return Fake(labels, classes={1: "Acura RL Sedan 2012"})


def make_imagenet(data_root: Path) -> Fake:
    from scipy.io import savemat

    root = data_root / "imagenet"
    wnids = ["n02012849", "n01440764", "n01443537"]  # labels follow sorted wnids
    index = {w: i for i, w in enumerate(sorted(wnids))}
    synsets = [
        {"ILSVRC2012_ID": i + 1, "WNID": w, "words": f"class {w}, alt", "gloss": "g",
         "num_children": 0, "wordnet_height": 0, "num_train_images": 3}
        for i, w in enumerate(wnids)
    ] + [{"ILSVRC2012_ID": 9, "WNID": "n00001740", "words": "entity", "gloss": "g",
          "num_children": 3, "wordnet_height": 9, "num_train_images": 0}]  # fmt: skip
    devkit = root / "tmp" / "ILSVRC2012_devkit_t12" / "data"
    devkit.mkdir(parents=True)
    savemat(devkit / "meta.mat", {"synsets": _struct(synsets)})
    labels: dict[str, dict[str, int]] = {"train": {}, "test": {}}
    truth, k = [], 0
    for w in wnids:
        for j in range(4):
            write_image(root / "train" / w / f"{w}_{j}.JPEG", k := k + 1)
            labels["train"][f"train/{w}/{w}_{j}.JPEG"] = index[w]
    for v, w in enumerate(wnids * 2, 1):
        write_image(root / "val" / w / f"ILSVRC2012_val_{v:08d}.JPEG", k := k + 1)
        labels["test"][f"val/{w}/ILSVRC2012_val_{v:08d}.JPEG"] = index[w]
        truth.append(str(wnids.index(w) + 1))
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(truth) + "\n")
    with tarfile.open(root / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
        tar.add(devkit.parent, arcname="ILSVRC2012_devkit_t12")
    import shutil

    shutil.rmtree(root / "tmp")
    # the real config holds out 50,000 train images; the fake has 12
    return Fake(labels, overrides=["dataset.val.count=3"], classes={0: "class n01440764, alt"})


def make(name: str, data_root: Path) -> Fake:
    import fakes_clip  # the CLIP paper's suite (issue 26)
    import fakes_custom  # the datasets our own readers parse, and the generic sources
    import fakes_tasks  # KITTI Distance, Country211, PCam, CLEVR Counts, Hateful Memes, SST2
    import fakes_video  # the video datasets as middle frames

    found = [vars(m) for m in (fakes_custom, fakes_tasks, fakes_video, fakes_clip)]
    maker = next((m[f"make_{name}"] for m in [globals(), *found] if f"make_{name}" in m), None)
    if maker is None:
        raise LookupError(f"no fake for dataset {name!r}: add make_{name} to tests/fakes*.py")
    return maker(data_root)
