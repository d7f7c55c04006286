"""Fakes for the datasets our own readers parse (SUN397, Caltech-101, Birdsnap), the generic
sources (image folders, a Hugging Face copy) and the bundled digits. See `fakes`."""

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
                classes={0: "BACKGROUND_Google"})  # fmt: skip


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
