"""Probing your own features: `encoder=precomputed dataset=npz dataset.path=FILE.npz`."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_cfg, main_refuses, run_cli

from probe.core.errors import ProbeError
from probe.datasets.npz import build
from probe.report.record import REQUIRED_FIELDS
from probe.run import run


def features(n: int, *, d: int = 8, k: int = 3, seed: int = 0, shift: float = 0.0):
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(42).normal(size=(k, d)) * 1.5
    y = np.arange(n) % k
    return (means[y] + rng.normal(size=(n, d)) + shift).astype(np.float32), y.astype(np.int64)


def write(path: Path, *, val: bool = False, compressed: bool = False, **override) -> Path:
    x_train, y_train = features(300)
    x_test, y_test = features(90, seed=1)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    if val:
        arrays["x_val"], arrays["y_val"] = features(60, seed=2)
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def overrides(dirs: list[str], path: Path, *extra: str) -> list[str]:
    return [*dirs, "encoder=precomputed", "dataset=npz", f"dataset.path={path}", *extra]


def test_cli_end_to_end_carves_val(dirs, tmp_path: Path) -> None:
    path = write(tmp_path / "feats.npz")
    proc = run_cli(overrides(dirs, path, "dataset.name=mine"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "results" / "precomputed" / "mine.json").read_text())
    assert set(REQUIRED_FIELDS) <= set(result)
    assert (result["encoder"], result["dataset"]) == ("precomputed", "mine")
    assert (result["n_train"], result["n_val"], result["n_test"]) == (240, 60, 90)
    assert result["feature_dim"] == 8 and result["num_classes"] == 3
    assert result["score"] > 80  # separable-ish blobs
    cached = np.load(Path(result["features"]["train"]) / "features.npy")
    np.testing.assert_array_equal(cached, np.load(path)["x_train"])  # rows copied unchanged


def test_official_val_metric_and_compressed_file(dirs, tmp_path: Path) -> None:
    path = write(tmp_path / "v.npz", val=True, compressed=True)
    rec = run(compose_cfg(overrides(dirs, path, "dataset.metric=mean_per_class")))
    assert (rec["n_train"], rec["n_val"], rec["n_test"]) == (300, 60, 90)
    assert set(rec["features"]) == {"train", "val", "test"}
    assert rec["metric"] == "mean_per_class"
    assert Path(rec["path"]) == Path(dirs[1].split("=", 1)[1]) / "precomputed" / "npz.json"


def test_new_file_content_is_never_served_from_a_stale_cache(dirs, tmp_path: Path) -> None:
    path = write(tmp_path / "same.npz")
    first = run(compose_cfg(overrides(dirs, path)))
    again = run(compose_cfg(overrides(dirs, path)))
    assert again["seconds"]["extract"] == 0.0  # unchanged file: cache hit
    x_new, y_new = features(300, seed=7, shift=3.0)
    write(path, x_train=x_new, y_train=y_new)  # same path and name, new rows
    second = run(compose_cfg(overrides(dirs, path)))
    assert second["seconds"]["extract"] > 0
    cached = np.load(Path(second["features"]["train"]) / "features.npy")
    np.testing.assert_array_equal(cached, x_new)
    assert first["features"]["train"] == second["features"]["train"]  # rebuilt in place


def test_loader_pickles_without_the_array(tmp_path: Path) -> None:
    path = write(tmp_path / "p.npz")
    for compressed in (False, True):
        write(path, compressed=compressed)
        split = build(path=str(path)).splits["train"]
        blob = pickle.dumps(split.load)
        assert len(blob) < 1000
        np.testing.assert_array_equal(pickle.loads(blob)(5), np.load(path)["x_train"][5])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"x_train": np.ones((300, 8), np.int64)}, "x_train has dtype int64; features must be"),
        ({"y_train": np.zeros(300, np.float32)}, "y_train has dtype float32; labels must be integ"),
        ({"x_test": np.ones((90, 2, 4), np.float32)}, "x_test has shape (90, 2, 4); it must be"),
        ({"y_test": np.zeros((90, 1), np.int64)}, "y_test has shape (90, 1); labels must be 1-D"),
        ({"y_train": np.zeros(299, np.int64)}, "x_train has 300 rows but y_train has 299 labels"),
        ({"x_test": np.ones((90, 5), np.float32)}, "feature widths differ"),
        ({"y_test": None}, "lacks ['y_test']"),
        ({"x_val": np.ones((4, 8), np.float32)}, "give both x_val and y_val"),
        ({"y_train": -np.ones(300, np.int64)}, "negative labels"),
        ({"y_train": np.array([object()] * 300)}, "pickle"),
    ],
)
def test_bad_inputs_are_refused_clearly(tmp_path: Path, change: dict, message: str) -> None:
    path = tmp_path / "bad.npz"
    if "pickle" in message:  # object arrays can only be written with pickling allowed
        arrays = dict(np.load(write(path)))
        arrays.update(change)
        np.savez(path, **arrays)
    else:
        write(path, **change)
    with pytest.raises(ProbeError) as err:
        build(path=str(path))
    assert message in str(err.value) and str(path) in str(err.value)


def test_missing_or_unreadable_file_and_num_classes(tmp_path: Path, dirs, caplog) -> None:
    with pytest.raises(ProbeError, match="dataset.path=FILE.npz"):
        build(path=None)
    with pytest.raises(ProbeError, match="does not exist"):
        build(path=str(tmp_path / "nope.npz"))
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(ProbeError, match="not a readable .npz"):
        build(path=str(tmp_path / "junk.npz"))
    path = write(tmp_path / "ok.npz")
    assert build(path=str(path), num_classes=5).num_classes == 5
    with pytest.raises(ProbeError, match="dataset.num_classes=2"):
        build(path=str(path), num_classes=2)
    # through `python -m probe`'s main (in-process): one line, exit 2
    assert "does not exist" in main_refuses(overrides(dirs, tmp_path / "nope.npz"), caplog)
