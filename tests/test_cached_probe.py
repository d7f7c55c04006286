"""`stage=probe` reads only the configs and the feature cache: the images may be gone.

Each test extracts from a real on-disk dataset (the image-folder fake of tests/fakes_custom.py),
deletes the images, and probes: the same score, C and head bytes as a run that had them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import fakes
import pytest
from conftest import compose_cfg

from probe.core.errors import ProbeError
from probe.run import run

FAST = ["probe.max_iter=30", "probe.tol=1e-2"]


def folder_run(dirs: list[str], tmp_path: Path, *extra: str) -> tuple[list[str], Path]:
    fake = fakes.make("imagefolder", tmp_path / "data")
    root = Path(fake.overrides[0].split("=", 1)[1])
    return [*dirs, "dataset=imagefolder", *fake.overrides, *FAST, *extra], root


@pytest.mark.parametrize(
    ("val", "n_val", "splits"),
    [("auto", 6, {"train", "val", "test"}), ("carve", 2, {"train", "test"})],
)
def test_probe_after_the_images_are_deleted_gives_the_same_result(
    dirs, tmp_path: Path, val: str, n_val: int, splits: set
) -> None:
    overrides, root = folder_run(dirs, tmp_path, f"dataset.val.source={val}")
    full = run(compose_cfg(overrides))
    head = Path(full["head"]["path"]).read_bytes()
    meta = json.loads((Path(full["features"]["train"]) / "meta.json").read_text())
    assert meta["dataset"] == {"num_classes": 3, "splits": ["train", "val", "test"],
                               "val_rule": "config", "info": full["dataset_info"]}  # fmt: skip
    shutil.rmtree(root)
    with pytest.raises(ProbeError, match="does not exist"):  # the images really are gone
        run(compose_cfg(overrides))
    probed = run(compose_cfg([*overrides, "stage=probe"]))
    assert set(probed["features"]) == splits and probed["n_val"] == n_val
    for key in ("score", "C", "search", "n_train", "n_val", "n_test", "num_classes",
                "dataset_info", "feature_dim", "features", "dtype", "score_ci"):  # fmt: skip
        assert probed[key] == full[key], key
    assert Path(probed["head"]["path"]).read_bytes() == head
    assert probed["head"]["sha256"] == full["head"]["sha256"]


def test_the_val_split_is_decided_from_the_cache_as_the_dataset_decides(dirs, tmp_path) -> None:
    """Extracted with a carve (the source's val split was not extracted): `val.source=auto`
    then means the official val, as a run with the images would; its entry is missing."""
    overrides, root = folder_run(dirs, tmp_path, "dataset.val.source=carve")
    run(compose_cfg([*overrides, "stage=extract"]))
    shutil.rmtree(root)
    carved = run(compose_cfg([*overrides, "stage=probe", "dataset.val.fraction=0.5"]))
    assert carved["n_val"] == 6 and carved["n_train"] == 6  # the carve changes: no re-extraction
    with pytest.raises(ProbeError, match=r"stage=probe needs cached features.* val \("):
        run(compose_cfg([*overrides, "stage=probe", "dataset.val.source=auto"]))
    with pytest.raises(ProbeError, match="labels span 0..2 but num_classes=2"):
        run(compose_cfg([*overrides, "stage=probe", "dataset.num_classes=2"]))


def test_entries_from_before_the_record_still_probe_and_get_it(dirs, tmp_path, caplog) -> None:
    overrides, root = folder_run(dirs, tmp_path)
    full = run(compose_cfg(overrides))
    metas = sorted(Path(p) / "meta.json" for p in full["features"].values())
    for meta in metas:  # as an older release wrote them
        old = json.loads(meta.read_text())
        del old["dataset"]
        meta.write_text(json.dumps(old))
    caplog.set_level("INFO")
    legacy = run(compose_cfg([*overrides, "stage=probe"]))  # builds the dataset to check
    assert "cached before meta.json recorded the dataset" in caplog.text
    assert legacy["score"] == full["score"]
    assert all("dataset" not in json.loads(m.read_text()) for m in metas)  # probe writes nothing
    run(compose_cfg([*overrides, "stage=extract"]))  # reuses the entries, adds the record
    assert all("dataset" in json.loads(m.read_text()) for m in metas)
    shutil.rmtree(root)
    assert run(compose_cfg([*overrides, "stage=probe"]))["score"] == full["score"]


def test_a_cpu_probe_finds_what_auto_extracted_in_bfloat16(dirs, tmp_path, caplog) -> None:
    """`encoder.dtype=auto` on a GPU node extracts in bf16; the CPU node's auto is fp32: the
    probe finds the bf16 entry (a model-free stub stands in for the GPU run, asked bf16)."""
    stub = ["encoder._target_=tests.stubs.slow_pixels", "+encoder.delay=0"]
    run(compose_cfg([*dirs, *stub, *FAST, "encoder.dtype=bfloat16", "stage=extract"]))
    caplog.set_level("INFO")
    probe = [*dirs, *stub, *FAST, "stage=probe", "device=cpu"]
    rec = run(compose_cfg([*probe, "encoder.dtype=auto"]))
    assert rec["dtype"] == "bfloat16" and "computed in bfloat16" in caplog.text
    with pytest.raises(ProbeError, match="stage=probe needs cached features"):
        run(compose_cfg([*probe, "encoder.dtype=float32"]))  # asked: fp32 only


def test_an_npz_that_changed_is_checked_and_one_that_is_gone_is_not_needed(dirs, tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "feats.npz"

    def write(shift: float) -> None:
        np.savez(path, x_train=rng.normal(size=(90, 4)) + shift, y_train=np.arange(90) % 3,
                 x_val=rng.normal(size=(30, 4)), y_val=np.arange(30) % 3,
                 x_test=rng.normal(size=(30, 4)), y_test=np.arange(30) % 3)  # fmt: skip

    write(0.0)
    overrides = [*dirs, "encoder=precomputed", "dataset=npz", f"dataset.path={path}", *FAST]
    full = run(compose_cfg(overrides))
    assert full["n_val"] == 30  # x_val: the official val, whatever dataset.val says
    write(5.0)  # same path, new rows: stat-ed, hashed, refused
    with pytest.raises(ProbeError, match="dataset samples or labels changed"):
        run(compose_cfg([*overrides, "stage=probe", "dataset.val.source=carve"]))
    path.unlink()
    probed = run(compose_cfg([*overrides, "stage=probe", "dataset.val.source=carve"]))
    assert (probed["score"], probed["C"], probed["n_val"]) == (full["score"], full["C"], 30)
