"""Every dataset config against a tiny fake copy in its real on-disk layout (tests/fakes.py).

Per config: the protocol's metric, class count and val source; split sizes and the label of
every sample; no overlap between train, carved val and test; a carve that is the same in
another process; and the error for a missing directory. Then the bad-input paths (truncated
images, empty class folders, missing split files), the Hugging Face source and two end-to-end
runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import fakes
import fakes_custom
import numpy as np
import pytest
from conftest import REPO, compose_cfg, config_names
from PIL import Image

from probe.core.errors import ProbeError
from probe.core.factory import make
from probe.datasets.base import ImageDataset
from probe.evaluations.splits import protocol_splits
from probe.run import run

# Every image dataset config. `npz` holds feature vectors, not images: tests/test_npz.py covers
# it (splits, official/carved val, refusals, missing file), so it is the one config left out.
VECTOR_DATASETS = {"npz"}
DATASETS = [n for n in config_names("dataset") if n not in VECTOR_DATASETS]
# docs/protocol.md section 3 (the spec, not results): metric, classes, where val comes from.
PROTOCOL = {
    "food101": ("top1", 101, "carve"),
    "cifar10": ("top1", 10, "carve"),
    "cifar100": ("top1", 100, "carve"),
    "birdsnap": ("top1", 500, "carve"),
    "sun397": ("top1", 397, "carve"),
    "stanford_cars": ("top1", 196, "carve"),
    "fgvc_aircraft": ("mean_per_class", 100, "official"),
    "dtd": ("top1", 47, "official"),
    "pets": ("mean_per_class", 37, "carve"),
    "caltech101": ("mean_per_class", 102, "carve"),
    "flowers102": ("mean_per_class", 102, "official"),
    "imagenet": ("top1", 1000, "carve"),
    "digits": ("top1", 10, "carve"),
    "cub200": ("top1", 200, "carve"),
    "voc2007": ("map11", 20, "official"),  # multi-label: N x 20 devkit flags
    # the CLIP paper's Table 9 (issue 26)
    "kitti_distance": ("top1", 4, "official"),
    "country211": ("top1", 211, "official"),
    "pcam": ("top1", 2, "official"),
    "clevr_counts": ("top1", 8, "carve"),
    "hateful_memes": ("roc_auc", 2, "carve"),
    "rendered_sst2": ("top1", 2, "official"),
    "ucf101": ("top1", 101, "carve"),  # middle frames of split 1
    "kinetics700": ("top1_top5_mean", 700, "carve"),  # middle frames; test = the val list
    # the CLIP paper's suite (issue 26), docs/protocol.md section 7
    "mnist": ("top1", 10, "carve"),
    "fer2013": ("top1", 7, "official"),  # PublicTest
    "stl10": ("top1", 10, "carve"),
    "eurosat": ("top1", 10, "carve"),
    "resisc45": ("top1", 45, "carve"),
    "gtsrb": ("top1", 43, "carve"),
}
GENERIC = {"imagefolder", "hf"}  # class count found in the data; val official if present


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROBE_SCAN_CACHE", str(tmp_path / "scans"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fakes.bypass_md5(monkeypatch.setattr)


def build(name: str, data_root: Path, *extra: str) -> tuple[ImageDataset, fakes.Fake]:
    fake = fakes.make(name, data_root)
    cfg = compose_cfg([f"dataset={name}", f"data_root={data_root}", *fake.overrides, *extra])
    return make(cfg.dataset), fake


def id_labels(split) -> dict[str, int]:
    return dict(zip(split.ids, split.labels.tolist(), strict=True))


def carved_ids(ds: ImageDataset) -> dict[str, list[str]]:
    """Sample ids of the protocol's train / val / test, through the pipeline's own carve."""
    feats = {s: (np.arange(len(sp))[:, None], sp.labels) for s, sp in ds.splits.items()}
    train, val, test = protocol_splits(ds, feats)
    val_from = "val" if ds.val.source == "official" else "train"
    rows = {"train": ("train", train), "val": (val_from, val), "test": ("test", test)}
    # the splits are row selections (`Rows`, read as float32): the row numbers come back exact
    return {k: [ds.splits[s].ids[i] for i in np.asarray(x)[:, 0].astype(int)]
            for k, (s, (x, _)) in rows.items()}  # fmt: skip


@pytest.mark.parametrize("name", DATASETS)
def test_splits_labels_and_protocol(name: str, tmp_path: Path) -> None:
    ds, fake = build(name, tmp_path / "data")
    if name in GENERIC:
        assert ds.num_classes == 3
        assert ds.val.source == ("official" if "val" in fake.labels else "carve")
    else:
        assert (ds.metric, ds.num_classes, ds.val.source) == PROTOCOL[name]
    if name == "imagenet":  # the fake is smaller; the config must hold out 50,000
        assert compose_cfg(["dataset=imagenet"]).dataset.val.count == 50000
    if "all" in fake.labels:  # a seeded per-class draw: labels right, counts per class per split
        assert set(ds.source_splits) == set(fake.per_class)
        for split, per_class in fake.per_class.items():
            got = id_labels(ds.splits[split])
            assert got.items() <= fake.labels["all"].items(), split
            assert np.bincount(ds.splits[split].labels).tolist() == [per_class] * 3, split
    else:
        assert set(ds.source_splits) == set(fake.labels)
        for split, expected in fake.labels.items():
            assert id_labels(ds.splits[split]) == expected, split
    for index, class_name in fake.classes.items():
        assert ds.classes[index] == class_name
    for s in ds.splits.values():
        if s.labels.ndim == 2:  # multi-label: one column of flags (1, 0, -1) per class
            assert s.labels.shape[1] == ds.num_classes and set(np.unique(s.labels)) <= {-1, 0, 1}
        else:
            assert 0 <= s.labels.min() and s.labels.max() < ds.num_classes
        image = s.load(s.items[0])
        assert isinstance(image, Image.Image) and image.mode in ("RGB", "L")
    ids = carved_ids(ds)
    assert sum(map(len, ids.values())) == len({i for v in ids.values() for i in v})  # disjoint
    assert all(ids.values())


def _carve_digest(data_root: str) -> dict[str, str]:
    """In this process: the carved train/val/test ids of every fake config, hashed."""
    import hashlib

    out = {}
    for name in DATASETS:
        fake_root = Path(data_root) / name
        fake = fakes.make(name, fake_root)
        cfg = compose_cfg([f"dataset={name}", f"data_root={fake_root}", *fake.overrides])
        ids = carved_ids(make(cfg.dataset))
        out[name] = hashlib.sha256(json.dumps(ids, sort_keys=True).encode()).hexdigest()
    return out


CHILD = """
import json, sys, shutil, tempfile
sys.path[:0] = [{repo!r}, {tests!r}]
import fakes
fakes.bypass_md5()
from test_datasets import _carve_digest
tmp = tempfile.mkdtemp()
print(json.dumps(_carve_digest(tmp)))
shutil.rmtree(tmp)
"""


def test_carved_splits_identical_across_processes(tmp_path: Path) -> None:
    """A fresh interpreter (another hash seed, fresh fakes) carves the same ids as this one."""
    here = _carve_digest(str(tmp_path))
    code = CHILD.format(repo=str(REPO), tests=str(REPO / "tests"))
    env = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
        env={**os.environ, **env, "PYTHONHASHSEED": "12345"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == here
    assert set(here) == set(DATASETS)


@pytest.mark.parametrize("name", [n for n in DATASETS if n != "digits"])
def test_missing_directory_names_dataset_path_and_fix(name: str, tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    extra = {"imagefolder": [f"dataset.root={nowhere}"], "hf": [f"dataset.path={nowhere}"]}
    cfg = compose_cfg([f"dataset={name}", f"data_root={nowhere}", *extra.get(name, [])])
    if "download" in cfg.dataset:
        cfg.dataset.download = False  # no network in tests
    with pytest.raises(ProbeError) as err:
        make(cfg.dataset)
    msg = str(err.value)
    assert f"dataset {name}" in msg and str(nowhere) in msg
    assert "does not exist" in msg
    assert any(w in msg for w in ("set ", "Place", "place", "Extract", "Unpack", "download"))


# --- bad input -------------------------------------------------------------------------------


def test_truncated_image_stops_with_path_and_fix(tmp_path: Path) -> None:
    ds, _ = build("pets", tmp_path / "data")
    split = ds.splits["train"]
    bad = tmp_path / "data" / "pets" / split.ids[1]
    fakes.truncate(bad)
    with Image.open(bad) as im:  # a lazy open does not notice: the loader must decode
        assert im.size == (8, 8)
    with pytest.raises(ProbeError, match="dataset pets: cannot read image") as err:
        split.load(split.items[1])
    assert str(bad) in str(err.value) and "dataset.skip_corrupt=true" in str(err.value)
    assert split.load(split.items[0]).size == (8, 8)


def test_skip_corrupt_drops_and_records_them(tmp_path: Path) -> None:
    fake = fakes.make("imagefolder", tmp_path / "data")
    root = tmp_path / "data" / "folders"
    fakes.truncate(root / "train" / "ant" / "5.png")
    (root / "test" / "bee" / "23.png").write_bytes(b"not an image")
    cfg = compose_cfg(["dataset=imagefolder", *fake.overrides])
    with pytest.raises(ProbeError, match="cannot read image"):
        ds = make(cfg.dataset)
        ds.splits["train"].load("train/ant/5.png")
    ds = make(
        compose_cfg(["dataset=imagefolder", *fake.overrides, "dataset.skip_corrupt=true"]).dataset
    )
    skipped = ds.info["skipped_corrupt"]
    assert skipped == {
        "count": 2,
        "ids": {"train": ["train/ant/5.png"], "test": ["test/bee/23.png"]},
    }
    assert len(ds.splits["train"]) == fake.sizes["train"] - 1
    assert "train/ant/5.png" not in ds.splits["train"].ids
    assert len(ds.splits["val"]) == fake.sizes["val"]


def test_corrupt_scan_is_remembered_until_a_file_changes(tmp_path: Path, monkeypatch) -> None:
    from probe.datasets import corrupt

    fake = fakes.make("imagefolder", tmp_path / "data")
    bad = tmp_path / "data" / "folders" / "train" / "ant" / "5.png"
    fakes.truncate(bad)
    cfg = compose_cfg(["dataset=imagefolder", *fake.overrides, "dataset.skip_corrupt=true"])
    first = make(cfg.dataset).info["skipped_corrupt"]
    assert first["ids"] == {"train": ["train/ant/5.png"]}
    scanned = []
    real = corrupt.find_corrupt
    monkeypatch.setattr(
        corrupt, "find_corrupt", lambda split, **kw: scanned.append(kw) or real(split, **kw)
    )
    assert make(cfg.dataset).info["skipped_corrupt"] == first and scanned == []
    fakes.write_image(bad, 5, fmt="PNG")  # repaired: the memo no longer applies
    assert make(cfg.dataset).info["skipped_corrupt"] == {"count": 0, "ids": {}}
    assert [kw["desc"] for kw in scanned] == ["imagefolder/train"]


def test_empty_class_folder_is_an_error(tmp_path: Path) -> None:
    fake = fakes.make("imagefolder", tmp_path / "data")
    (tmp_path / "data" / "folders" / "test" / "ant").mkdir(exist_ok=True)
    for f in (tmp_path / "data" / "folders" / "test" / "ant").iterdir():
        f.unlink()
    with pytest.raises(ProbeError, match=r"dataset imagefolder: class folder .*test/ant holds no"):
        make(compose_cfg(["dataset=imagefolder", *fake.overrides]).dataset)
    fakes.make("caltech101", tmp_path / "c")
    cal = tmp_path / "c" / "caltech101" / "caltech101" / "101_ObjectCategories"
    (cal / "ferry").mkdir()
    with pytest.raises(ProbeError, match=r"dataset caltech101: class folder .*ferry holds no"):
        make(compose_cfg(["dataset=caltech101", f"data_root={tmp_path / 'c'}"]).dataset)


@pytest.mark.parametrize(
    ("name", "split_file"),
    [
        ("dtd", "dtd/dtd/dtd/labels/val1.txt"),
        ("sun397", "sun397/SUN397/Partitions/Testing_01.txt"),
        ("birdsnap", "birdsnap/birdsnap/test_images.txt"),
        ("fgvc_aircraft", "fgvc_aircraft/fgvc-aircraft-2013b/data/images_variant_test.txt"),
        ("cub200", "cub200/CUB_200_2011/train_test_split.txt"),
        ("voc2007", "voc2007/VOCdevkit/VOC2007/ImageSets/Main/tvmonitor_test.txt"),
        ("hateful_memes", "hateful_memes/hateful_memes/dev_seen.jsonl"),
        ("pcam", "pcam/pcam/camelyonpatch_level_2_split_valid_y.h5"),
        ("ucf101", "ucf101/ucfTrainTestlist/testlist01.txt"),
        ("kinetics700", "kinetics700/k700-2020/annotations/val.csv"),
    ],
)
def test_missing_split_file_names_it(name: str, split_file: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    fake = fakes.make(name, data)
    (data / split_file).unlink()
    cfg = compose_cfg([f"dataset={name}", f"data_root={data}", *fake.overrides])
    with pytest.raises(ProbeError, match=f"dataset {name}") as err:
        make(cfg.dataset)
    assert str(data / split_file) in str(err.value)


def test_labels_beyond_num_classes_are_an_error(tmp_path: Path) -> None:
    expected = r"dataset pets: train labels span 0\.\.2 but num_classes=2; set dataset\.num"
    with pytest.raises(ProbeError, match=expected):
        build("pets", tmp_path / "data", "dataset.num_classes=2")


def test_birdsnap_records_the_counts_found(tmp_path: Path) -> None:
    ds, fake = build("birdsnap", tmp_path / "data")
    assert ds.info["listed"] == {"train": 12, "test": 6}
    assert ds.info["found"] == fake.sizes == {"train": 9, "test": 5}
    assert ds.info["missing"] == {"train": 3, "test": 1}


def test_caltech_draw_is_seeded(tmp_path: Path) -> None:
    ds, _ = build("caltech101", tmp_path / "data")
    again, _ = build("caltech101", tmp_path / "again")
    other, _ = build("caltech101", tmp_path / "other", "dataset.split_seed=1")
    assert list(ds.splits["train"].ids) == list(again.splits["train"].ids)
    assert list(ds.splits["train"].ids) != list(other.splits["train"].ids)
    assert "BACKGROUND_Google" in ds.classes


def test_imagenet_as_image_folders_matches_torchvision(tmp_path: Path) -> None:
    tv, _ = build("imagenet", tmp_path / "data")
    folders = make(
        compose_cfg(
            ["dataset=imagenet", f"data_root={tmp_path / 'data'}", "dataset.source=imagefolder"]
        ).dataset
    )
    for split in ("train", "test"):
        assert id_labels(folders.splits[split]) == id_labels(tv.splits[split])
    assert folders.val.count == 50000 and "val" not in folders.splits


# --- Hugging Face copies ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "hub_splits", "image", "label"),
    [
        ("food101", {"train": 6, "validation": 3}, "image", "label"),
        ("cifar10", {"train": 6, "test": 3}, "img", "label"),
        ("cifar100", {"train": 6, "test": 3}, "img", "fine_label"),
    ],
)
def test_hub_copies_keep_the_protocol_splits(name, hub_splits, image, label, tmp_path) -> None:
    """dataset.source=hf reads a copy with the hub's split and column names."""
    path = tmp_path / "copy"
    labels = fakes_custom.write_hf(path, hub_splits, image=image, label=label)
    cfg = compose_cfg([f"dataset={name}", "dataset.source=hf", f"dataset.hf.path={path}"])
    ds = make(cfg.dataset)
    test_name = "validation" if name == "food101" else "test"
    assert id_labels(ds.splits["train"]) == labels["train"]
    assert [int(v) for v in ds.splits["test"].labels] == list(labels[test_name].values())
    assert ds.classes == ["cat", "dog", "emu"] and ds.num_classes == PROTOCOL[name][1]
    assert ds.splits["test"].load(0).size == (8, 8)


def test_hf_parquet_directory_and_bad_names(tmp_path: Path) -> None:
    path = tmp_path / "pq"
    labels = fakes_custom.write_hf(
        path, {"train": 6, "test": 3}, image="image", label="label", parquet=True
    )
    cache = f"+dataset.cache_dir={tmp_path / 'hfcache'}"
    ds = make(compose_cfg(["dataset=hf", f"dataset.path={path}", cache]).dataset)
    assert id_labels(ds.splits["train"]) == labels["train"]
    assert ds.num_classes == 3 and ds.val.source == "carve"
    with pytest.raises(ProbeError, match="has no column 'picture'.*Set dataset.image_column"):
        make(compose_cfg(["dataset=hf", f"dataset.path={path}", cache,
                          "dataset.image_column=picture"]).dataset)  # fmt: skip
    with pytest.raises(ProbeError, match="has no split test=validation"):
        make(compose_cfg(["dataset=hf", f"dataset.path={path}", cache,
                          "dataset.splits.test=validation"]).dataset)  # fmt: skip


def test_source_hf_without_a_hub_copy_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="dataset stanford_cars: set dataset.path .*hf.path"):
        make(compose_cfg(["dataset=stanford_cars", "dataset.source=hf"]).dataset)
    with pytest.raises(ProbeError, match="dataset pets: no Hugging Face copy"):
        make(compose_cfg(["dataset=pets", "dataset.source=hf"]).dataset)
    path = tmp_path / "copy"  # any config takes a copy: + adds the hf block it lacks
    labels = fakes_custom.write_hf(path, {"trainval": 6, "test": 3}, image="image", label="label")
    pets_hf = ["dataset=pets", "dataset.source=hf", f"+dataset.hf.path={path}"]
    with pytest.raises(ProbeError, match="dataset pets: the hub split names are not set"):
        make(compose_cfg(pets_hf).dataset)
    ds = make(compose_cfg([*pets_hf, "+dataset.hf.splits={train: trainval, test: test}"]).dataset)
    assert id_labels(ds.splits["train"]) == {
        k.replace("trainval", "train"): v for k, v in labels["trainval"].items()
    }


# --- end to end ------------------------------------------------------------------------------


def test_run_official_val_and_size_warning(dirs, tmp_path: Path, caplog) -> None:
    fakes.make("flowers102", tmp_path / "data")
    caplog.set_level("WARNING")
    rec = run(compose_cfg([*dirs, "dataset=flowers102"]))
    assert (rec["n_train"], rec["n_val"], rec["n_test"]) == (6, 6, 6)
    assert rec["metric"] == "mean_per_class" and rec["num_classes"] == 102
    assert set(rec["features"]) == {"train", "val", "test"}
    assert "train split has 6 images; the protocol table says 1020" in caplog.text
    assert rec["dataset_info"]["source"] == "torchvision.Flowers102"


def test_run_with_skip_corrupt_records_skipped(dirs, tmp_path: Path) -> None:
    fake = fakes.make("imagefolder", tmp_path / "data")
    fakes.truncate(tmp_path / "data" / "folders" / "train" / "bee" / "9.png")
    rec = run(
        compose_cfg([*dirs, "dataset=imagefolder", *fake.overrides, "dataset.skip_corrupt=true"])
    )
    saved = json.loads(Path(rec["path"]).read_text())
    assert saved["dataset_info"]["skipped_corrupt"]["count"] == 1
    assert saved["dataset_info"]["skipped_corrupt"]["ids"] == {"train": ["train/bee/9.png"]}
    assert (saved["n_train"], saved["n_val"], saved["n_test"]) == (11, 6, 6)


def test_error_from_a_loader_worker_keeps_its_one_line_message(tmp_path: Path) -> None:
    """torch re-raises a worker's ProbeError with the worker traceback glued on; we strip it."""
    from torch._utils import ExceptionWrapper

    ds, _ = build("pets", tmp_path / "data")
    split = ds.splits["test"]
    fakes.truncate(tmp_path / "data" / "pets" / split.ids[0])
    try:
        split.load(split.items[0])
    except ProbeError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(ProbeError) as err:
        wrapped.reraise()
    assert str(err.value).startswith("dataset pets: cannot read image ")
    assert "Traceback" not in str(err.value) and "\n" not in str(err.value)


# --- user mistakes about splits (issue 13, defect 7) ------------------------------------------


def test_missing_test_split_and_official_val_are_probe_errors(tmp_path: Path) -> None:
    """One line naming the dataset, what was found and the fix; never a bare ValueError."""
    fake = fakes.make("imagefolder", tmp_path / "data")
    with pytest.raises(ProbeError) as err:
        build("hf", tmp_path / "data", "~dataset.splits.test")
    msg = str(err.value)
    assert msg.startswith("dataset hf: no test split (found: train)") and "\n" not in msg
    assert "dataset.splits.test=NAME" in msg
    shutil.rmtree(tmp_path / "data" / "folders" / "val")
    cfg = compose_cfg(["dataset=imagefolder", *fake.overrides, "dataset.val.source=official"])
    with pytest.raises(ProbeError) as err:
        make(cfg.dataset)
    msg = str(err.value)
    assert "dataset.val.source=official but there is no val split (found: train, test)" in msg
    assert "dataset.val.source=carve" in msg and "\n" not in msg


# --- 16-bit and palette files through every family's loader (issue 13, defect 4) ------------

# in-memory uint8 arrays (pickles, IDX, csv and binary files; PCam: HDF5): no image files to read
ARRAY_DATASETS = {"cifar10", "cifar100", "digits", "pcam", "mnist", "fer2013", "stl10"}
FILE_DATASETS = [n for n in DATASETS if n not in ARRAY_DATASETS | {"hf"}]


def ramp16() -> np.ndarray:
    """A 48 x 64 16-bit ramp over nearly the whole range (0 .. 64,491)."""
    return (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)


def palette_png(*, transparent: bool) -> tuple[bytes, np.ndarray]:
    """A 16-colour palette PNG and the RGB its palette lookup gives (computed here)."""
    import io

    rng = np.random.default_rng(3)
    rgb = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((64, 48))
    pal = rgb.quantize(colors=16)
    if transparent:
        pal.info["transparency"] = 0
    buf = io.BytesIO()
    pal.save(buf, format="PNG")
    with Image.open(io.BytesIO(buf.getvalue())) as back:
        assert back.mode == "P" and ("transparency" in back.info) == transparent
        table = np.asarray(back.getpalette(), dtype=np.uint8).reshape(-1, 3)
        want = table[np.asarray(back)]
    return buf.getvalue(), want


def deep_png() -> tuple[bytes, np.ndarray]:
    import io

    buf = io.BytesIO()
    Image.fromarray(ramp16()).save(buf, format="PNG")
    want = np.round(ramp16() * (255.0 / 65535.0)).astype(np.uint8)
    return buf.getvalue(), np.repeat(want[..., None], 3, axis=2)


def through_encoders(image) -> tuple[np.ndarray, np.ndarray]:
    """The loaded image through two real encoder transforms: raw pixels (exact values at the
    native size) and CLIP L/14's preprocessing at 32 px."""
    pixels = make(compose_cfg(["encoder=pixels"]).encoder, device="cpu")
    block = compose_cfg(["encoder=clip_l14", "encoder.resolution=32"]).encoder.preprocess
    from probe.encoders.preprocess import build_transform

    clip = build_transform(**dict(block))
    return pixels.transform(image).numpy(), clip(image).numpy()


def check_loaded(image, want: np.ndarray, path: Path) -> None:
    from reference import openai_reference

    assert image.mode == "RGB"
    flat, clip = through_encoders(image)
    np.testing.assert_array_equal(
        np.round(flat.reshape(3, *want.shape[:2]) * 255).astype(np.uint8), want.transpose(2, 0, 1)
    )
    assert (flat == 1.0).mean() < 0.01  # a 16-bit ramp is scaled, not clipped to white
    with Image.open(path) as raw:  # the independent reference reads the file itself
        ref = openai_reference(raw, 32)
    assert np.abs(clip - ref).max() <= 1e-5


@pytest.mark.parametrize("name", FILE_DATASETS)
def test_sixteen_bit_and_palette_files_through_the_loader(name: str, tmp_path: Path) -> None:
    """Each family's real loader reads 16-bit and palette PNGs in the dataset's own layout
    (under the file names it lists: a PNG under a .jpg name, as ImageNet has a few)."""
    from probe.datasets.common import ImageFiles

    ds, _ = build(name, tmp_path / "data")
    split = ds.splits["train"]
    assert isinstance(split.load, ImageFiles), f"{name}: not read from image files"
    files = [
        (deep_png(), 0),
        (palette_png(transparent=False), 1),
        (palette_png(transparent=True), 2),
    ]
    for (data, want), i in files:
        path = Path(split.load.root) / split.items[i]
        path.write_bytes(data)
        check_loaded(split.load(split.items[i]), want, path)


def test_every_image_family_is_covered() -> None:
    assert set(FILE_DATASETS) | ARRAY_DATASETS | {"hf"} == set(DATASETS)
    assert {"sun397", "caltech101", "birdsnap", "imagefolder", "food101"} <= set(FILE_DATASETS)


def test_sixteen_bit_and_palette_in_a_hugging_face_copy(tmp_path: Path) -> None:
    import datasets

    cases = [deep_png(), palette_png(transparent=False), palette_png(transparent=True)]
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])}
    )
    rows = {"image": [{"bytes": b, "path": None} for b, _ in cases], "label": [0, 1, 2]}
    split = datasets.Dataset.from_dict(rows, features=features)
    datasets.DatasetDict({"train": split, "test": split}).save_to_disk(str(tmp_path / "copy"))
    ds = make(compose_cfg(["dataset=hf", f"dataset.path={tmp_path / 'copy'}"]).dataset)
    for i, (data, want) in enumerate(cases):
        (tmp_path / f"{i}.png").write_bytes(data)
        check_loaded(ds.splits["train"].load(i), want, tmp_path / f"{i}.png")
