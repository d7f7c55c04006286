"""Fakes for six datasets of the CLIP paper's suite (issue 26): KITTI Distance, Country211,
PatchCamelyon, CLEVR Counts, Hateful Memes and Rendered SST2, each in the layout its archive
(or torchvision's download) unpacks to. See `fakes`."""

from __future__ import annotations

import collections
import json
import zipfile
from pathlib import Path

import numpy as np
from fakes import Fake, write_image

# --- KITTI Distance --------------------------------------------------------------------------

# (drive, [(type, z), ...] per image): each drive's images in frame order. 8 drives, so TFDS's
# rule holds out max(1, 10% of 8) = 1 drive for test and 1 for validation.
KITTI_DRIVES = {
    "2011_09_26_drive_0001_sync": [[("Car", 7.5), ("Pedestrian", 3.0)], [("Van", 8.0)]],
    "2011_09_26_drive_0002_sync": [[("Truck", 8.01)], [("Pedestrian", 4.0), ("DontCare", -1000)]],
    "2011_09_26_drive_0005_sync": [[("Car", 20.0), ("Car", 35.2)], [("Cyclist", 2.0)]],
    "2011_09_28_drive_0016_sync": [[("Car", 20.5)], [("Tram", 5.0), ("Car", 999.0)]],
    "2011_09_29_drive_0026_sync": [[("Car", 12.3), ("Van", 45.0)], [("Misc", 1.0)]],
    "2011_09_30_drive_0018_sync": [[("Van", 3.1)], [("Truck", 60.0)]],
    "2011_10_03_drive_0034_sync": [[("Car", 9.9)], [], [("Car", 1.2)]],
    "2011_10_03_drive_0042_sync": [[("Person_sitting", 2.0)], [("Car", 22.0)]],
}


def kitti_class(objects: list[tuple[str, float]]) -> int:
    """Independently of the reader: the closest Car/Van/Truck, in VTAB's buckets."""
    z = min((d for t, d in objects if t in ("Car", "Van", "Truck")), default=1000.0)
    return 0 if z <= 8.0 else 1 if z <= 20.0 else 2 if z <= 999.0 else 3


def tfds_kitti_split(rand_ids: list[int], lines: list[str]) -> tuple[list, list, list]:
    """A transcription of TFDS's `_build_splits` (kitti 3.x), global numpy state and all."""
    video_to_image = collections.defaultdict(list)
    for image_id, mapping_lineid in enumerate(rand_ids):
        video_to_image[lines[mapping_lineid].split(" ")[1]].append(image_id)
    state = np.random.get_state()
    np.random.seed(seed=123)
    num_test = max(1, 10 * len(video_to_image) // 100)
    num_val = max(1, 10 * len(video_to_image) // 100)
    test_videos = set(np.random.choice(sorted(video_to_image), num_test, replace=False))
    val_videos = set(
        np.random.choice(sorted(set(video_to_image) - test_videos), num_val, replace=False)
    )
    test, val, train = [], [], []
    for k, v in video_to_image.items():
        (test if k in test_videos else val if k in val_videos else train).extend(v)
    np.random.set_state(state)
    return train, val, test


def kitti_line(kind: str, z: float) -> str:
    return f"{kind} 0.00 0 -1.57 10.0 20.0 50.0 80.0 1.50 1.60 3.90 1.00 1.70 {z:.2f} 0.01\n"


def make_kitti_distance(data_root: Path, *, devkit: str = "zip") -> Fake:
    """Kitti/raw/training/{image_2,label_2} as torchvision's Kitti has them, and the object
    devkit's mapping files (`devkit="zip"`: devkit_object.zip left in raw/, as downloaded;
    `"folder"`: unzipped there). The mapping lists frames out of drive order, as the real
    train_rand.txt does."""
    raw = data_root / "kitti" / "Kitti" / "raw"
    mapping = [f"{d[:10]} {d} {f:010d}" for d, frames in KITTI_DRIVES.items()
               for f in range(len(frames))]  # fmt: skip
    objects = [frames[f] for frames in KITTI_DRIVES.values() for f in range(len(frames))]
    order = np.random.default_rng(7).permutation(len(mapping))  # image id -> mapping line
    rand = ",".join(str(i + 1) for i in order)
    for image_id, line in enumerate(order):
        write_image(raw / "training" / "image_2" / f"{image_id:06d}.png", image_id, fmt="PNG")
        label_file = raw / "training" / "label_2" / f"{image_id:06d}.txt"
        label_file.parent.mkdir(parents=True, exist_ok=True)
        label_file.write_text("".join(kitti_line(t, z) for t, z in objects[line]))
    files = {"mapping/train_rand.txt": rand + "\n",
             "mapping/train_mapping.txt": "\n".join(mapping) + "\n"}  # fmt: skip
    if devkit == "zip":
        with zipfile.ZipFile(raw / "devkit_object.zip", "w") as z:
            for name, text in {**files, "readme.txt": "devkit\n"}.items():
                z.writestr(name, text)
    else:
        for name, text in files.items():
            (raw / name).parent.mkdir(parents=True, exist_ok=True)
            (raw / name).write_text(text)
    train, val, test = tfds_kitti_split([int(i) for i in order], mapping)
    labels = {
        split: {f"training/image_2/{i:06d}.png": kitti_class(objects[order[i]]) for i in ids}
        for split, ids in (("train", train), ("val", val), ("test", test))
    }
    return Fake(labels, classes={3: "no vehicle"})


# --- torchvision folder layouts: Country211, Rendered SST2 ----------------------------------


def make_country211(data_root: Path) -> Fake:
    base = data_root / "country211" / "country211"
    countries = ["ZW", "AD", "FR"]  # ImageFolder: sorted folder names (AD, FR, ZW)
    labels: dict[str, dict[str, int]] = {}
    k = 0
    for ours, folder, n in (("train", "train", 3), ("val", "valid", 2), ("test", "test", 2)):
        labels[ours] = {}
        for c in countries:
            for _ in range(n):
                k += 1
                write_image(base / folder / c / f"{k}.jpg", k)
                labels[ours][f"country211/{folder}/{c}/{k}.jpg"] = sorted(countries).index(c)
    return Fake(labels, classes={0: "AD", 2: "ZW"})


def make_rendered_sst2(data_root: Path) -> Fake:
    base = data_root / "rendered_sst2" / "rendered-sst2"
    labels: dict[str, dict[str, int]] = {}
    k = 0
    for ours, folder, n in (("train", "train", 4), ("val", "valid", 2), ("test", "test", 3)):
        labels[ours] = {}
        for y, c in enumerate(("negative", "positive")):
            for _ in range(n):
                k += 1
                write_image(base / folder / c / f"{k}.png", k, fmt="PNG")
                labels[ours][f"rendered-sst2/{folder}/{c}/{k}.png"] = y
    return Fake(labels, classes={0: "negative", 1: "positive"})


# --- PatchCamelyon: HDF5 arrays --------------------------------------------------------------


def write_pcam(folder: Path, name: str, labels: list[int], seed: int) -> None:
    import h5py

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (len(labels), 8, 8, 3), dtype=np.uint8)
    stem = folder / f"camelyonpatch_level_2_split_{name}"
    with h5py.File(f"{stem}_x.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(1, 8, 8, 3), compression="gzip")  # as released
    with h5py.File(f"{stem}_y.h5", "w") as f:
        f.create_dataset("y", data=np.asarray(labels, dtype=np.uint8).reshape(-1, 1, 1, 1))


def make_pcam(data_root: Path) -> Fake:
    folder = data_root / "pcam" / "pcam"
    labels: dict[str, dict[str, int]] = {}
    for s, (ours, name, n) in enumerate((("train", "train", 8), ("val", "valid", 4),
                                         ("test", "test", 6))):  # fmt: skip
        ys = [(i * 3 + s) % 2 for i in range(n)]
        write_pcam(folder, name, ys, seed=s)
        labels[ours] = {f"{name}/{i}": y for i, y in enumerate(ys)}
    return Fake(labels, classes={1: "lymph node containing metastatic tumor tissue"})


# --- CLEVR Counts: a seeded draw from CLEVR's train and val ----------------------------------

CLEVR_FAKE = {"train": (16, 12), "val": (8, 6)}  # CLEVR split -> (images, drawn)


def make_clevr_counts(data_root: Path) -> Fake:
    """CLEVR_v1.0/images/{train,val}/*.png with scenes/CLEVR_{split}_scenes.json (scenes listed
    in another order than the files); the draw the config's seed gives, transcribed."""
    base = data_root / "clevr" / "clevr" / "CLEVR_v1.0"
    rng = np.random.Generator(np.random.PCG64(0))  # the config's split_seed
    labels: dict[str, dict[str, int]] = {}
    for clevr, (n, k) in CLEVR_FAKE.items():
        names = [f"CLEVR_{clevr}_{i:06d}.png" for i in range(n)]
        counts = [3 + (5 * i + len(clevr)) % 8 for i in range(n)]  # every count 3..10
        for i, name in enumerate(names):
            write_image(base / "images" / clevr / name, i + 100 * len(clevr), fmt="PNG")
        scenes = [{"image_filename": f, "objects": [{"shape": "cube"}] * c}
                  for f, c in reversed(list(zip(names, counts, strict=True)))]  # fmt: skip
        (base / "scenes").mkdir(parents=True, exist_ok=True)
        (base / "scenes" / f"CLEVR_{clevr}_scenes.json").write_text(json.dumps({"scenes": scenes}))
        pick = np.sort(rng.permutation(n)[:k])
        ours = "train" if clevr == "train" else "test"
        labels[ours] = {f"clevr/CLEVR_v1.0/images/{clevr}/{names[i]}": counts[i] - 3 for i in pick}
    overrides = [f"dataset.train_count={CLEVR_FAKE['train'][1]}",
                 f"dataset.test_count={CLEVR_FAKE['val'][1]}"]  # fmt: skip
    return Fake(labels, overrides=overrides, classes={0: "3", 7: "10"})


# --- Hateful Memes: JSON lines ---------------------------------------------------------------


def make_hateful_memes(data_root: Path) -> Fake:
    """hateful_memes/ as the release unpacks: img/NNNNN.png and the five .jsonl files (the
    test files unlabelled, as first released); ids are not in file order."""
    base = data_root / "hateful_memes" / "hateful_memes"
    labels: dict[str, dict[str, int]] = {}
    sizes = {"train": 8, "dev_seen": 4, "dev_unseen": 3, "test_seen": 3, "test_unseen": 2}
    k = 0
    for s, (name, n) in enumerate(sizes.items()):
        rows = []
        for j in range(n):
            k += 1
            meme = 90000 - 37 * k
            write_image(base / "img" / f"{meme:05d}.png", k, fmt="PNG")
            row = {"id": meme, "img": f"img/{meme:05d}.png", "label": (j + s) % 2,
                   "text": f"meme {k}"}  # fmt: skip
            if name.startswith("test"):
                del row["label"]
            rows.append(json.dumps(row) + "\n")
        (base / f"{name}.jsonl").write_text("".join(rows))
        if name in ("train", "dev_seen"):
            ours = "train" if name == "train" else "test"
            labels[ours] = {json.loads(r)["img"]: json.loads(r)["label"] for r in rows}
    return Fake(labels, classes={1: "hateful"})
