"""The CLIP paper's suite (issue 26) beyond what tests/test_datasets.py checks of every config:
FER2013's usages and its other csv, STL-10's folds, the seeded per-class draws of EuroSAT and
RESISC45, and one run through the pipeline on an official val split held in arrays."""

from __future__ import annotations

from pathlib import Path

import fakes
import numpy as np
import pytest
from conftest import compose_cfg

from probe.core.errors import ProbeError
from probe.core.factory import make
from probe.datasets.splits import per_class_subsets
from probe.run import run


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROBE_SCAN_CACHE", str(tmp_path / "scans"))
    fakes.bypass_md5(monkeypatch.setattr)


def build(name: str, data_root: Path, *extra: str):
    fake = fakes.make(name, data_root)
    cfg = compose_cfg([f"dataset={name}", f"data_root={data_root}", *fake.overrides, *extra])
    return make(cfg.dataset), fake


def ids(ds, split: str) -> dict[str, int]:
    return dict(zip(ds.splits[split].ids, ds.splits[split].labels.tolist(), strict=True))


# --- FER2013 -----------------------------------------------------------------------------------


def test_fer2013_icml_copy_reads_the_same(tmp_path: Path) -> None:
    """icml_face_data.csv: the same rows with `emotion, Usage, pixels` (leading spaces)."""
    data = tmp_path / "data"
    ds, fake = build("fer2013", data)
    folder = data / "fer2013" / "fer2013"
    rows = (folder / "fer2013.csv").read_text().splitlines()[1:]
    icml = ["emotion, Usage, pixels"]
    for row in rows:
        emotion, rest = row.split(",", 1)
        pixels, usage = rest.rsplit(",", 1)
        icml.append(f"{emotion},{usage},{pixels}")
    (folder / "fer2013.csv").unlink()
    (folder / "icml_face_data.csv").write_text("\n".join(icml) + "\n")
    again = make(compose_cfg(["dataset=fer2013", f"data_root={data}"]).dataset)
    for split in ("train", "val", "test"):
        assert ids(again, split) == fake.labels[split]
        first = again.splits[split]
        assert np.array_equal(np.asarray(first.load(0)), np.asarray(ds.splits[split].load(0)))


def test_fer2013_without_labels_or_with_a_bad_row(tmp_path: Path) -> None:
    data = tmp_path / "data"
    fakes.make("fer2013", data)
    folder = data / "fer2013" / "fer2013"
    lines = (folder / "fer2013.csv").read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",Private"  # the third data row's Usage
    (folder / "fer2013.csv").write_text("\n".join(lines) + "\n")
    cfg = compose_cfg(["dataset=fer2013", f"data_root={data}"])
    with pytest.raises(ProbeError, match=r"fer2013.csv data row 3 is not a 48 x 48 face") as err:
        make(cfg.dataset)
    assert "Usage='Private'" in str(err.value) and "\n" not in str(err.value)
    (folder / "fer2013.csv").unlink()
    (folder / "train.csv").write_text("emotion,pixels\n")  # torchvision's other layout
    (folder / "test.csv").write_text("pixels\n")
    with pytest.raises(ProbeError) as err:
        make(cfg.dataset)
    msg = str(err.value)
    assert f"split file {folder / 'fer2013.csv'} does not exist" in msg
    assert "test.csv is there, but it has no labels" in msg and "icml_face_data.csv" in msg


# --- STL-10 ------------------------------------------------------------------------------------


def test_stl10_fold_trains_on_that_fold_with_its_own_name(tmp_path: Path) -> None:
    data = tmp_path / "data"
    whole, fake = build("stl10", data)
    assert ids(whole, "train") == fake.labels["train"] and whole.info["fold"] is None
    fold3 = make(compose_cfg(["dataset=stl10", f"data_root={data}", "dataset.fold=3",
                              "dataset.name=stl10_fold3"]).dataset)  # fmt: skip
    line = (data / "stl10" / "stl10_binary" / "fold_indices.txt").read_text().splitlines()[3]
    assert list(fold3.splits["train"].ids) == [f"train/{i}" for i in line.split()]
    assert ids(fold3, "train").items() <= ids(whole, "train").items()
    image = np.asarray(fold3.splits["train"].load(0))
    assert np.array_equal(image, np.asarray(whole.splits["train"].load(int(line.split()[0]))))
    assert ids(fold3, "test") == ids(whole, "test")
    with pytest.raises(ProbeError, match=r"give it its own name \(dataset.name=stl10_fold3\)"):
        build("stl10", tmp_path / "again", "dataset.fold=3")
    with pytest.raises(ProbeError, match=r"dataset.fold=10; STL-10 has folds 0-9"):
        build("stl10", tmp_path / "more", "dataset.fold=10", "dataset.name=x")


def test_stl10_image_is_torchvisions(tmp_path: Path) -> None:
    from torchvision.datasets import STL10

    ds, _ = build("stl10", tmp_path / "data")
    tv = STL10(str(tmp_path / "data" / "stl10"), split="test")
    assert np.array_equal(np.asarray(ds.splits["test"].load(4)), np.asarray(tv[4][0]))


# --- EuroSAT and RESISC45: the seeded per-class draw ---------------------------------------------


@pytest.mark.parametrize("name", ["eurosat", "resisc45"])
def test_draw_is_seeded_and_per_class(name: str, tmp_path: Path) -> None:
    ds, fake = build(name, tmp_path / "data")
    again, _ = build(name, tmp_path / "again")
    other, _ = build(name, tmp_path / "other", "dataset.split_seed=1")
    for split in ("train", "test"):
        assert list(ds.splits[split].ids) == list(again.splits[split].ids)
    assert any(list(ds.splits[s].ids) != list(other.splits[s].ids) for s in ("train", "test"))
    assert ds.info["per_class"] == fake.per_class and ds.info["listed"] == len(fake.labels["all"])


def test_one_missing_image_moves_only_its_class() -> None:
    labels = np.repeat(np.arange(3), 8)
    kw = {"sizes": {"train": 2, "test": 3}, "seed": 0, "dataset": "d", "classes": ["a", "b", "c"]}
    full = per_class_subsets(labels, **kw)
    short = per_class_subsets(np.delete(labels, 0), **kw)  # class a lost its first image
    for split in ("train", "test"):  # classes b and c: the same images (indices moved by one)
        assert np.array_equal(full[split][full[split] >= 8] - 1, short[split][short[split] >= 7])
    with pytest.raises(ProbeError, match=r"class 'a' has 8 images, fewer than the 9"):
        per_class_subsets(labels, **{**kw, "sizes": {"train": 4, "test": 5}})


# --- through the pipeline ------------------------------------------------------------------------


def test_run_fer2013_official_val(dirs, tmp_path: Path) -> None:
    fakes.make("fer2013", tmp_path / "data")
    fast = ["encoder.size=8", "probe.tol=1e-2", "bootstrap.resamples=20"]  # 192 features, not 6,912
    rec = run(compose_cfg([*dirs, "dataset=fer2013", *fast]))
    assert (rec["n_train"], rec["n_val"], rec["n_test"]) == (18, 6, 6)
    assert rec["metric"] == "top1" and rec["num_classes"] == 7
    assert set(rec["features"]) == {"train", "val", "test"}
