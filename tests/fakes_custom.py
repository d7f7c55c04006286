"""Fakes for the datasets our own readers parse (SUN397, Caltech-101, Birdsnap, CUB-200-2011,
VOC 2007), the generic sources (image folders, a Hugging Face copy) and the bundled digits.
See `fakes`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fakes import Fake, write_image
from PIL import Image


def make_sun397(data_root: Path) -> Fake:
    images = data_root / "sun397" / "SUN397"
    classes = ["/a/abbey", "/b/bakery/shop", "/z/zen_garden"]
    (images / "Partitions").mkdir(parents=True)
    (images / "ClassName.txt").write_text("\n".join(classes) + "\n")
    (images / "Partitions" / "ClassName.txt").write_text("\n".join(classes) + "\n")
    labels: dict[str, dict[str, int]] = {}
    k = 0
    for split, listing in (("train", "Training_01.txt"), ("test", "Testing_01.txt")):
        lines, labels[split] = [], {}
        for y, c in enumerate(classes):
            for _ in range(3):
                k += 1
                rel = f"{c}/sun_{k:06d}.jpg"
                write_image(images / rel.lstrip("/"), k)
                lines.append(rel)
                labels[split][rel.lstrip("/")] = y
        (images / "Partitions" / listing).write_text("\n".join(lines) + "\n")
    write_image(images / "a" / "abbey" / "sun_unlisted.jpg", 999)  # in no partition-01 list
    (images / "Partitions" / "Training_02.txt").write_text("/a/abbey/sun_unlisted.jpg\n")
    return Fake(labels, classes={1: "b/bakery/shop"})


def make_caltech101(data_root: Path) -> Fake:
    """Labels only; which images land in train is the seeded draw, checked by count."""
    base = data_root / "caltech101" / "caltech101" / "101_ObjectCategories"
    classes = ["accordion", "BACKGROUND_Google", "Faces"]  # sorted: BACKGROUND_Google, Faces, ...
    index = {c: i for i, c in enumerate(sorted(classes))}
    every: dict[str, int] = {}
    for c in classes:
        for j in range(1, 6):
            write_image(base / c / f"image_{j:04d}.jpg", 10 * index[c] + j)
            every[f"{c}/image_{j:04d}.jpg"] = index[c]
    return Fake({"all": every}, overrides=["dataset.train_per_class=3"],
                classes={0: "BACKGROUND_Google"}, per_class={"train": 3, "test": 2})  # fmt: skip


def make_birdsnap(data_root: Path) -> Fake:
    base = data_root / "birdsnap" / "birdsnap"
    species = [(1, "Acadian Flycatcher", "Acadian_Flycatcher"), (2, "Blue Jay", "Blue_Jay"),
               (3, "Cedar Waxwing", "Cedar_Waxwing")]  # fmt: skip
    base.mkdir(parents=True)
    (base / "species.txt").write_text(
        "id\tcommon\tscientific\tdir\n"
        + "".join(f"{i}\t{c}\tLatin {i}\t{d}\n" for i, c, d in species)
    )
    header = "url\tmd5\tpath\tspecies_id\tbb_x1\tbb_y1\tbb_x2\tbb_y2\n"
    rows, tests = [], []
    labels: dict[str, dict[str, int]] = {"train": {}, "test": {}}
    for y, (sid, _, d) in enumerate(species):
        for j in range(6):
            rel = f"{d}/{j}.jpg"
            rows.append(f"http://x/{d}{j}\tmd5\t{rel}\t{sid}\t0\t0\t4\t4\n")
            split = "test" if j < 2 else "train"
            if split == "test":
                tests.append(rel)
            if j == 5 or (sid == 3 and j == 0):  # rotted URLs: listed but never downloaded
                continue
            write_image(base / "download" / "images" / rel, 10 * sid + j)
            labels[split][rel] = y
    (base / "images.txt").write_text(header + "".join(rows))
    (base / "test_images.txt").write_text("path\n" + "\n".join(tests) + "\n")
    return Fake(labels, classes={1: "Blue Jay"})


def make_cub200(data_root: Path) -> Fake:
    """CUB_200_2011/ as the archive unpacks: the four lists and images/NNN.Name/*.jpg; ids
    listed out of order in images.txt, train and test interleaved as in the real split."""
    base = data_root / "cub200" / "CUB_200_2011"
    classes = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
    base.mkdir(parents=True)
    (base / "classes.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(classes, 1)))
    rows, labels_txt, split_txt = [], [], []
    labels: dict[str, dict[str, int]] = {"train": {}, "test": {}}
    for y, c in enumerate(classes):
        for j in range(5):
            image_id = 10 * y + j + 1
            rel = f"{c}/{c[4:]}_{j:04d}_{image_id}.jpg"
            write_image(base / "images" / rel, image_id)
            train = j in (0, 2, 3)  # 3 train, 2 test per class, interleaved
            rows.append(f"{image_id} {rel}\n")
            labels_txt.append(f"{image_id} {y + 1}\n")
            split_txt.append(f"{image_id} {int(train)}\n")
            labels["train" if train else "test"][rel] = y
    (base / "images.txt").write_text("".join(reversed(rows)))
    (base / "image_class_labels.txt").write_text("".join(labels_txt))
    (base / "train_test_split.txt").write_text("".join(split_txt))
    return Fake(labels, classes={1: "002.Laysan_Albatross"})


VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")  # fmt: skip


def voc_flag(c: int, i: int) -> int:
    """Class c in image i: present when (c + i) % 3 == 0, difficult (0) for every 4th class
    when it is 1, else absent: each class present and absent in every split of 6 images."""
    if (c + i) % 3 == 0:
        return 1
    return 0 if (c + i) % 3 == 1 and c % 4 == 0 else -1


def make_voc2007(data_root: Path) -> Fake:
    """VOCdevkit/VOC2007/ as the trainval and test tars unpack: ImageSets/Main/CLASS_SPLIT.txt
    (devkit flags 1 / 0 / -1, ids in file order) and JPEGImages/NNNNNN.jpg; 6 images a split."""
    devkit = data_root / "voc2007" / "VOCdevkit" / "VOC2007"
    (devkit / "ImageSets" / "Main").mkdir(parents=True)
    labels: dict[str, dict[str, list[int]]] = {}
    for s, split in enumerate(("train", "val", "test")):
        ids = [f"{100 * s + 3 * i + 5:06d}" for i in range(6)]
        for i in ids:
            write_image(devkit / "JPEGImages" / f"{i}.jpg", int(i))
        (devkit / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for c, cls in enumerate(VOC_CLASSES):
            lines = [f"{i} {voc_flag(c, k):2d}\n" for k, i in enumerate(ids)]  # as the devkit
            (devkit / "ImageSets" / "Main" / f"{cls}_{split}.txt").write_text("".join(lines))
        labels[split] = {f"{i}.jpg": [voc_flag(c, k) for c in range(20)]
                         for k, i in enumerate(ids)}  # fmt: skip
    return Fake(labels, classes={0: "aeroplane", 19: "tvmonitor"})


def make_imagefolder(data_root: Path) -> Fake:
    root = data_root / "folders"
    classes = ["Zebra", "ant", "bee"]  # sorted: Zebra, ant, bee (case-sensitive, as ImageFolder)
    labels: dict[str, dict[str, int]] = {}
    k = 0
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        labels[split] = {}
        for c in classes:
            for _ in range(n):
                k += 1
                write_image(root / split / c / f"{k}.png", k, fmt="PNG")
                labels[split][f"{split}/{c}/{k}.png"] = sorted(classes).index(c)
    return Fake(labels, overrides=[f"dataset.root={root}"], classes={0: "Zebra"})


def write_hf(path: Path, splits: dict[str, int], *, image: str, label: str, parquet=False):
    """A tiny Hugging Face DatasetDict (ClassLabel labels), saved to disk or as parquet."""
    import datasets

    names = ["cat", "dog", "emu"]
    features = datasets.Features({image: datasets.Image(), label: datasets.ClassLabel(names=names)})
    out, labels = {}, {}
    for s, n in splits.items():
        ys = [(i * 2 + len(s)) % 3 for i in range(n)]
        rng = np.random.default_rng(n)
        ims = [Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in ys]
        out[s] = datasets.Dataset.from_dict({image: ims, label: ys}, features=features)
        labels[s] = {f"{s}/{i}": y for i, y in enumerate(ys)}
    dd = datasets.DatasetDict(out)
    if parquet:
        for s, ds in dd.items():
            ds.to_parquet(str(path / "data" / f"{s}-00000-of-00001.parquet"))
    else:
        dd.save_to_disk(str(path))
    return labels


def make_hf(data_root: Path) -> Fake:
    path = data_root / "hf_copy"
    labels = write_hf(path, {"train": 9, "test": 6}, image="image", label="label")
    return Fake(labels, overrides=[f"dataset.path={path}"], classes={1: "dog"})


def make_digits(data_root: Path) -> Fake:
    from sklearn.datasets import load_digits

    from probe.datasets.splits import stratified_holdout

    y = load_digits().target
    train, test = stratified_holdout(y, count=450, seed=0)
    return Fake(
        {s: {str(i): int(y[i]) for i in idx} for s, idx in (("train", train), ("test", test))}
    )
