"""`probe.normalize` (recorded in the result) and where results of other kinds and settings go."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONFIGS, compose_cfg
from hydra import compose, initialize_config_dir
from test_npz import overrides, write

from probe.core.errors import ProbeError
from probe.evaluations.normalize import normalize_rows
from probe.launch.grid import expand, resolve_runs
from probe.report.record import name_overrides, result_name
from probe.report.tables.data import fill_command
from probe.run import run


def test_l2_rows_are_clip_benchmarks_normalize(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(70001, 5)).astype(np.float32) * 30
    X[3] = 0.0
    want = torch.nn.functional.normalize(torch.from_numpy(X), dim=-1).numpy()
    np.save(tmp_path / "x.npy", X)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    rows = normalize_rows(mapped, "l2")  # a selection: rows are normalised as they are read
    got = np.asarray(rows)
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    assert got.dtype == np.float32 and not np.shares_memory(got, mapped) and mapped[0, 0] == X[0, 0]
    assert np.all(got[3] == 0) and np.allclose(np.linalg.norm(np.delete(got, 3, 0), axis=1), 1)
    np.testing.assert_array_equal(rows[69990:70001], got[69990:])  # chunks read the same
    np.testing.assert_array_equal(rows[3], got[3])
    owned = X.copy()
    np.testing.assert_array_equal(normalize_rows(owned, "l2")[:5], got[:5])
    assert np.array_equal(owned, X)  # never normalised in place: the caller's array is kept
    assert normalize_rows(X, "none") is X


def test_l2_run_equals_a_run_on_normalised_features(dirs, tmp_path: Path) -> None:
    raw = write(tmp_path / "raw.npz")
    arrays = dict(np.load(raw))
    for split in ("x_train", "x_test"):
        x = arrays[split].astype(np.float64)
        arrays[split] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    unit = tmp_path / "unit.npz"
    np.savez(unit, **arrays)
    a = run(compose_cfg(overrides(dirs, raw, "probe.normalize=l2", "dataset.name=blobs")))
    b = run(compose_cfg(overrides(dirs, unit, "dataset.name=unit")))
    assert (a["normalize"], b["normalize"]) == ("l2", "none")
    assert a["C"] == b["C"] and a["score"] == pytest.approx(b["score"], abs=1e-9)
    assert a["path"].endswith("precomputed@l2/blobs.json") and a["encoder"] == "precomputed@l2"
    assert np.array_equal(np.load(Path(a["features"]["train"]) / "features.npy"),
                          np.load(raw)["x_train"])  # the cache keeps raw features  # fmt: skip
    with pytest.raises(ProbeError, match="probe.normalize='l3' is not valid; allowed: none, l2"):
        run(compose_cfg(overrides(dirs, raw, "probe.normalize=l3")))


@pytest.mark.parametrize("probe", ["torch", "sklearn", "cuml"])
def test_every_probe_config_defaults_to_none(probe: str) -> None:
    assert compose_cfg([f"probe={probe}"]).probe.normalize == "none"


def test_result_names_of_kinds_and_normalisation() -> None:
    cases = {
        (): "dinov2_l14",
        ("encoder.feature=pooler_output",): "dinov2_l14",
        ("encoder.feature=last4",): "dinov2_l14@last4",
        ("encoder.feature=cls+mean", "probe.normalize=l2"): "dinov2_l14@cls+mean@l2",
        ("probe.normalize=l2",): "dinov2_l14@l2",
    }
    for extra, name in cases.items():
        cfg = compose_cfg(["encoder=dinov2_l14", *extra])
        assert result_name(cfg.encoder, cfg.probe) == name
        back = compose_cfg([*name_overrides(name)])
        assert result_name(back.encoder, back.probe) == name
    assert fill_command("dinov2_l14@last4", "dtd", "results") == (
        "python -m probe encoder=dinov2_l14 encoder.feature=last4 dataset=dtd"
    )
    assert result_name(compose_cfg([]).encoder, compose_cfg([]).probe) == "pixels"


def test_a_grid_over_kinds_writes_one_result_per_kind(tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        grid = compose(config_name="probe_grid", overrides=["grid=dinov2_kinds"]).grid
        assert len(expand(grid)) == 2 * 12 * 3
        small = {
            **grid,
            "encoders": ["dinov2_l14"],
            "datasets": ["dtd", "pets"],
        }  # the same runs, fewer
        runs = resolve_runs(expand(small), results_dir=tmp_path)
    assert len({r.result for r in runs}) == len(runs) == 6, "two runs share a result file"
    names = {r.result.parent.name for r in runs}
    assert names == {"dinov2_l14", "dinov2_l14@cls+mean", "dinov2_l14@last4"}
    assert "'encoder.features=[pooler_output,cls+mean,last4]'" in runs[0].line()
