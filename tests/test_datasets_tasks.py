"""What the parametrised dataset tests do not reach in six datasets of the CLIP paper's suite
(issue 26): KITTI's distance buckets and split by drive, PatchCamelyon's HDF5 loader and its
missing-h5py message, CLEVR's seeded draw, Hateful Memes' split files. Reader, split sizes and
metric of each are in tests/test_datasets.py, through `fakes_tasks`."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import fakes
import fakes_tasks
import numpy as np
import pytest
from conftest import compose_cfg

from probe.core.errors import ProbeError
from probe.core.factory import make
from probe.datasets import kitti_distance
from probe.run import run


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROBE_SCAN_CACHE", str(tmp_path / "scans"))


def build(name: str, data_root: Path, *extra: str):
    fake = fakes.make(name, data_root)
    cfg = compose_cfg([f"dataset={name}", f"data_root={data_root}", *fake.overrides, *extra])
    return make(cfg.dataset), fake


def ids(ds, split: str) -> list[str]:
    return list(ds.splits[split].ids)


# --- KITTI Distance --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("objects", "label"),
    [
        ([("Car", 7.99)], 0),
        ([("Car", 8.0)], 0),  # VTAB's largest threshold below z: 8 m is still "nearby"
        ([("Van", 8.01)], 1),
        ([("Truck", 20.0)], 1),
        ([("Car", 20.01), ("Pedestrian", 1.0), ("Cyclist", 2.0)], 2),  # only vehicles count
        ([("Car", 999.0)], 2),
        ([("Car", 45.0), ("Van", 3.5), ("Truck", 30.0)], 0),  # the closest vehicle
        ([("Tram", 4.0), ("Misc", 2.0), ("Person_sitting", 1.0), ("DontCare", -1000.0)], 3),
        ([], 3),
    ],
)
def test_kitti_distance_buckets(objects, label, tmp_path: Path) -> None:
    path = tmp_path / "000000.txt"
    path.write_text("".join(fakes_tasks.kitti_line(t, z) for t, z in objects))
    assert kitti_distance.distance_class(path, dataset="kitti_distance") == label
    assert fakes_tasks.kitti_class(objects) == label


def test_kitti_split_by_drive_is_tfds_rule_at_scale() -> None:
    """40 drives of 1-30 frames, listed in a random order: the reader's split equals a
    transcription of TFDS's `_build_splits` (4 test and 4 validation drives), and no drive
    straddles two splits."""
    rng = np.random.default_rng(3)
    lines = [f"2011_09_26 2011_09_26_drive_{d:04d}_sync {f:010d}"
             for d in range(40) for f in range(int(rng.integers(1, 31)))]  # fmt: skip
    order = rng.permutation(len(lines))
    rand = ",".join(str(i + 1) for i in order)
    got = kitti_distance.drive_splits(rand, "\n".join(lines) + "\n", dataset="kitti_distance")
    train, val, test = fakes_tasks.tfds_kitti_split([int(i) for i in order], lines)
    assert got == {"train": sorted(train), "val": sorted(val), "test": sorted(test)}
    drive = {i: lines[order[i]].split()[1] for i in range(len(order))}
    held = [{drive[i] for i in got[s]} for s in ("train", "val", "test")]
    assert [len(h) for h in held] == [32, 4, 4] and not (held[0] & held[1] or held[1] & held[2])


def test_kitti_devkit_unzipped_or_zipped_and_missing(tmp_path: Path) -> None:
    zipped, _ = build("kitti_distance", tmp_path / "a")
    fake = fakes_tasks.make_kitti_distance(tmp_path / "b", devkit="folder")
    cfg = compose_cfg(["dataset=kitti_distance", f"data_root={tmp_path / 'b'}"])
    unzipped = make(cfg.dataset)
    for split in ("train", "val", "test"):
        assert ids(zipped, split) == ids(unzipped, split) == sorted(fake.labels[split])
    raw = tmp_path / "b" / "kitti" / "Kitti" / "raw"
    (raw / "mapping" / "train_mapping.txt").unlink()
    with pytest.raises(ProbeError) as err:
        make(cfg.dataset)
    msg = str(err.value)
    assert f"{raw}/mapping/train_mapping.txt does not exist" in msg
    assert "unzip devkit_object.zip into" in msg and "\n" not in msg


def test_kitti_listed_image_missing_is_an_error(tmp_path: Path) -> None:
    fakes.make("kitti_distance", tmp_path)
    gone = tmp_path / "kitti" / "Kitti" / "raw" / "training" / "image_2" / "000004.png"
    gone.unlink()
    with pytest.raises(ProbeError, match=f"dataset kitti_distance: {gone} does not exist, but"):
        make(compose_cfg(["dataset=kitti_distance", f"data_root={tmp_path}"]).dataset)


# --- PatchCamelyon ---------------------------------------------------------------------------


def test_pcam_without_h5py_says_how_to_install(tmp_path: Path, monkeypatch) -> None:
    fakes.make("pcam", tmp_path)
    monkeypatch.setitem(sys.modules, "h5py", None)  # `import h5py` raises ImportError
    with pytest.raises(ProbeError) as err:
        make(compose_cfg(["dataset=pcam", f"data_root={tmp_path}"]).dataset)
    assert str(err.value) == (
        "dataset pcam: PatchCamelyon's .h5 files are read with h5py, which is not installed; "
        "pip install h5py (or pip install 'probe-bench[pcam]')"
    )


def test_pcam_loader_reads_the_array_and_survives_pickling(tmp_path: Path) -> None:
    import h5py

    ds, _ = build("pcam", tmp_path)
    split = ds.splits["test"]
    with h5py.File(Path(split.load.path), "r") as f:
        want = f["x"][4]
    first = np.asarray(split.load(4))
    again = pickle.loads(pickle.dumps(split.load))  # as a DataLoader worker gets it
    assert again._file is None
    np.testing.assert_array_equal(first, want)
    np.testing.assert_array_equal(np.asarray(again(4)), want)
    assert split.load(4).mode == "RGB" and split.load(4).size == (8, 8)


def test_pcam_images_and_labels_disagree(tmp_path: Path) -> None:
    fakes.make("pcam", tmp_path)
    fakes_tasks.write_pcam(tmp_path / "pcam" / "pcam", "test", [0, 1, 0], seed=9)  # x and y: 3
    y = tmp_path / "pcam" / "pcam" / "camelyonpatch_level_2_split_test_y.h5"
    import h5py

    with h5py.File(y, "w") as f:
        f.create_dataset("y", data=np.zeros((5, 1, 1, 1), dtype=np.uint8))
    with pytest.raises(ProbeError, match="holds 3 images but .*_test_y.h5 5 labels"):
        make(compose_cfg(["dataset=pcam", f"data_root={tmp_path}"]).dataset)


def test_pcam_end_to_end(dirs, tmp_path: Path) -> None:
    """The HDF5 loader through the real extraction (DataLoader workers) and probe."""
    fakes.make("pcam", tmp_path / "data")
    rec = run(compose_cfg([*dirs, "dataset=pcam", "bootstrap.resamples=20", "probe.tol=1e-2"]))
    assert (rec["n_train"], rec["n_val"], rec["n_test"]) == (8, 4, 6)
    assert rec["metric"] == "top1" and rec["num_classes"] == 2


# --- CLEVR Counts ----------------------------------------------------------------------------


def test_clevr_draw_is_seeded_and_drawn_from_train_and_val(tmp_path: Path) -> None:
    ds, fake = build("clevr_counts", tmp_path / "a")
    again, _ = build("clevr_counts", tmp_path / "b")
    other, _ = build("clevr_counts", tmp_path / "c", "dataset.split_seed=1")
    assert ids(ds, "train") == ids(again, "train") != ids(other, "train")
    assert len(ds.splits["train"]) == len(other.splits["train"]) == 12
    assert all("/images/train/" in i for i in ids(ds, "train"))
    assert all("/images/val/" in i for i in ids(ds, "test")) and len(ds.splits["test"]) == 6
    assert ds.classes == [str(n) for n in range(3, 11)]


def test_clevr_asking_more_than_the_split_has(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match=r"dataset.test_count=9 images asked, but the CLEVR"):
        build("clevr_counts", tmp_path, "dataset.test_count=9")


# --- Hateful Memes ---------------------------------------------------------------------------


def test_hateful_memes_unlabelled_test_file_and_folder_as_root(tmp_path: Path) -> None:
    with pytest.raises(ProbeError) as err:
        build("hateful_memes", tmp_path / "a", "dataset.splits.test=test_seen.jsonl")
    msg = str(err.value)
    assert "test_seen.jsonl line 1 has no label" in msg and "dataset.splits.test=dev_seen" in msg
    fake = fakes.make("hateful_memes", tmp_path / "b")
    folder = tmp_path / "b" / "hateful_memes" / "hateful_memes"
    ds = make(compose_cfg(["dataset=hateful_memes", f"dataset.root={folder}"]).dataset)
    test = ds.splits["test"]
    assert dict(zip(test.ids, test.labels.tolist(), strict=True)) == fake.labels["test"]
