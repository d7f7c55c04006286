"""Extreme feature magnitudes: the scale-free paths give the same answer at any finite float32
magnitude, the linear protocols refuse what their arithmetic cannot hold, and values the
float32 cache cannot store (NaN, inf, float64 beyond float32) are refused where they are read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_cfg, main_refuses
from test_npz import features, overrides, write

from probe.core.errors import ProbeError
from probe.evaluations.knn import knn_predict
from probe.evaluations.normalize import normalize_rows
from probe.run import run
from probe.solvers.resident import _principal_axes

# powers of two scale float32 exactly (within the normal range): 1e-30, 1e-18, 1e18, 1e20, 1e36
SCALES = [2.0**-100, 2.0**-60, 2.0**60, 2.0**66, 2.0**120]
FIT = ["probe.tol=1e-2"]


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = np.random.default_rng(9).normal(size=(4, 16))[y] + rng.normal(scale=1.5, size=(n, 16))
    return x.astype(np.float32), y


def _knn(queries: np.ndarray, bank: np.ndarray, labels: np.ndarray, **kw) -> dict:
    opts = {"ks": [1, 5, 20], "temperature": 0.07, "num_classes": 4, **kw}
    return knn_predict(queries=queries, bank=[bank[:50], bank[50:]], bank_labels=labels, **opts)


@pytest.mark.parametrize("scale", SCALES)
def test_knn_predictions_do_not_depend_on_the_magnitude(scale: float) -> None:
    bank, labels = _blobs(90, 0)
    queries, _ = _blobs(37, 1)
    want = _knn(queries, bank, labels)
    got = _knn((queries * scale).astype(np.float32), (bank * scale).astype(np.float32), labels)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_knn_on_subnormal_and_float32_max_rows() -> None:
    """Rows whose every value is subnormal (1e-42) or near float32's largest (3e38): each
    is compared by its direction, as its float64 values say."""
    bank, labels = _blobs(90, 0)
    queries, _ = _blobs(37, 1)
    want = _knn(queries, bank, labels)
    big = bank / np.abs(bank).max(1, keepdims=True) * np.float32(3e38)
    tiny = (bank.astype(np.float64) * 1e-42).astype(np.float32)  # a few digits left
    assert np.isfinite(big).all() and np.abs(tiny).max() < np.finfo(np.float32).tiny
    np.testing.assert_array_equal(_knn(queries, big.astype(np.float32), labels)[1], want[1])
    cos = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (
        tiny / np.linalg.norm(tiny.astype(np.float64), axis=1, keepdims=True)
    ).T
    np.testing.assert_array_equal(_knn(queries, tiny, labels)[1], labels[cos.argmax(1)])


def test_knn_small_temperature_votes_for_the_nearest_not_the_lowest_class() -> None:
    """exp(sim / T) overflows to inf from T ~ 1/709: tied infinite votes then went to the
    lowest class index. Taken relative to the nearest neighbour, T -> 0 is 1-NN."""
    bank = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2]], np.float32)
    labels = np.array([2, 0, 0])
    query = np.array([[1.0, 0.01]], np.float32)
    for temperature in (1e-3, 1e-5):
        got = knn_predict(queries=query, bank=[bank], bank_labels=labels, ks=[3],
                          temperature=temperature, num_classes=3)  # fmt: skip
        assert got[3].tolist() == [2]


@pytest.mark.parametrize("magnitude", [1e-42, 1e-20, 1e-13, 1.0, 1e20, 3e38])
def test_l2_rows_are_unit_length_at_any_magnitude(magnitude: float) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 7))
    X = (X / np.abs(X).max() * magnitude).astype(np.float32)
    X[3] = 0.0
    got = np.asarray(normalize_rows(X, "l2"))
    norms = np.linalg.norm(got.astype(np.float64), axis=1)
    assert np.all(got[3] == 0) and np.allclose(np.delete(norms, 3), 1.0, atol=1e-6)
    x64 = X.astype(np.float64)[:3]
    np.testing.assert_allclose(got[:3], x64 / np.linalg.norm(x64, axis=1, keepdims=True),
                               atol=1e-6)  # fmt: skip


@pytest.mark.parametrize("scale", [2.0**-70, 2.0**66, 2.0**120])
def test_principal_axes_scale_with_the_features(scale: float) -> None:
    """The torch solver's basis: float32 squares overflowed at 1e18 (LinAlgError from eigh)
    and vanished at 1e-20; the basis is the same at any scale, the spectrum scales by s^2."""
    X, _ = _blobs(200, 3)
    mean, basis, spectrum = _principal_axes(torch.from_numpy(X))
    m2, b2, s2 = _principal_axes(torch.from_numpy((X * scale).astype(np.float32)))
    np.testing.assert_allclose(m2.numpy(), mean.numpy() * scale, rtol=1e-6)
    np.testing.assert_allclose(s2.numpy(), spectrum.numpy() * scale**2, rtol=1e-5)
    np.testing.assert_allclose(np.abs(b2.numpy()), np.abs(basis.numpy()), atol=1e-5)


def _scaled(path: Path, scale: float, dtype=np.float32) -> Path:
    x_train, y_train = features(300)
    x_test, y_test = features(90, seed=1)
    return write(path, x_train=(x_train.astype(np.float64) * scale).astype(dtype),
                 x_test=(x_test.astype(np.float64) * scale).astype(dtype))  # fmt: skip


@pytest.mark.parametrize("scale", [2.0**66, 2.0**-100])
def test_knn_run_scores_the_same_at_extreme_magnitudes(dirs, tmp_path: Path, scale) -> None:
    unit = run(compose_cfg(overrides(dirs, write(tmp_path / "u.npz"), "eval=knn")))
    far = run(compose_cfg(overrides(dirs, _scaled(tmp_path / "s.npz", scale), "eval=knn",
                                    "dataset.name=far")))  # fmt: skip
    assert far["test_score_by_k"] == unit["test_score_by_k"] and far["score"] > 80


@pytest.mark.parametrize(
    "extra",
    [["probe=torch"], ["probe=sklearn"], ["eval=fewshot", "eval.shots=[2]", "eval.seeds=1"]],
)
@pytest.mark.parametrize(("scale", "shown"), [(1e20, r"e\+20"), (1e-30, "e-30"), (3e37, r"e\+38")])
def test_linear_protocols_refuse_magnitudes_they_cannot_hold(dirs, tmp_path, extra, scale, shown):
    path = _scaled(tmp_path / "s.npz", scale)
    with pytest.raises(ProbeError, match=rf"largest \|feature\| in train is [\d.]+{shown}, "
                       r"outside 0.001..1e\+06.*probe.normalize=l2.*eval=knn") as err:  # fmt: skip
        run(compose_cfg(overrides(dirs, path, *extra, *FIT)))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("scale", [2.0**-100, 2.0**66])
def test_l2_makes_any_magnitude_fit_for_the_linear_probe(dirs, tmp_path: Path, scale) -> None:
    unit = run(compose_cfg(overrides(dirs, write(tmp_path / "u.npz"), "probe.normalize=l2",
                                     *FIT)))  # fmt: skip
    far = run(compose_cfg(overrides(dirs, _scaled(tmp_path / "s.npz", scale), *FIT,
                                    "probe.normalize=l2", "dataset.name=far")))  # fmt: skip
    assert far["score"] == unit["score"] and far["C"] == unit["C"]


def test_float64_features_inside_float32s_range_probe_as_float32(dirs, tmp_path: Path) -> None:
    a = run(compose_cfg(overrides(dirs, write(tmp_path / "a.npz"), *FIT)))
    b = run(compose_cfg(overrides(dirs, _scaled(tmp_path / "b.npz", 1.0, np.float64), *FIT,
                                  "dataset.name=b")))  # fmt: skip
    assert (a["score"], a["C"]) == (b["score"], b["C"])


@pytest.mark.parametrize(
    ("value", "dtype", "message"),
    [
        (np.nan, np.float32, r"x_train row 5 holds NaN or inf; features must be finite"),
        (np.inf, np.float16, r"x_train row 5 holds NaN or inf"),
        (-np.inf, np.float64, r"x_train row 5 holds NaN or inf"),
        (1e100, np.float64, r"x_train row 5 holds values beyond float32's range .*3.4e\+38"),
        (-1e39, np.float64, r"x_train row 5 holds values beyond float32's range"),
        (1e-50, np.float64, r"x_train row 5 holds values all below 1.18e-38"),
    ],
)
def test_values_the_cache_cannot_store_are_refused_where_read(dirs, tmp_path, value, dtype,
                                                              message) -> None:  # fmt: skip
    x_train, _ = features(300)
    x_train = x_train.astype(dtype)
    x_train[5] = value if abs(value) > 1 or not np.isfinite(value) else x_train[5] * value
    path = write(tmp_path / "bad.npz", x_train=x_train)
    for evaluation in ("eval=linear", "eval=knn"):
        with pytest.raises(ProbeError, match=f"dataset.path={path}: {message}"):
            run(compose_cfg(overrides(dirs, path, evaluation)))
    assert not list((tmp_path / "cache").rglob("meta.json"))  # nothing finished from it


def test_damaged_cache_with_inf_read_unverified_is_refused(dirs, tmp_path: Path) -> None:
    path = write(tmp_path / "ok.npz")
    first = run(compose_cfg(overrides(dirs, path, "eval=knn")))
    feats = Path(first["features"]["train"]) / "features.npy"
    arr = np.load(feats, mmap_mode="r+")
    arr[7, 2] = np.inf  # the checksum no longer matches, but verify=false trusts the bytes
    arr.flush()
    del arr
    for evaluation in ("eval=knn", "eval=linear"):
        with pytest.raises(ProbeError, match="train features hold NaN or infinite values"):
            run(compose_cfg(overrides(dirs, path, evaluation, "stage=probe",
                                      "extract.verify=false")))  # fmt: skip


def test_cli_refusal_is_one_line_exit_2(dirs, tmp_path: Path, caplog) -> None:
    """Through `python -m probe`'s main (in-process): one line, exit 2."""
    line = main_refuses(overrides(dirs, _scaled(tmp_path / "s.npz", 1e20)), caplog)
    assert "largest |feature| in train is" in line
