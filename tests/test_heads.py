"""Results that can be rechecked: the refitted head and the test predictions beside each JSON.

Everything here is recomputed from the files a run leaves (the result JSON, its .npz and the
cached features), never from the run's objects: re-scoring, top-5, and the gradient of the
CLIP objective at the saved head, in float64 by numpy.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, compose_cfg
from omegaconf import OmegaConf

from probe.report.tables.data import scan_results
from probe.report.tables.flags import protocol_flags
from probe.run import run


def load_run(rec: dict) -> tuple[dict, np.lib.npyio.NpzFile]:
    saved = json.loads(Path(rec["path"]).read_text())
    head = Path(saved["head"]["path"])
    assert head == Path(rec["path"]).with_suffix(".npz")
    assert hashlib.sha256(head.read_bytes()).hexdigest() == saved["head"]["sha256"]
    return saved, np.load(head, allow_pickle=False)


def cached(entry: str) -> tuple[np.ndarray, np.ndarray]:
    return np.load(Path(entry) / "features.npy"), np.load(Path(entry) / "labels.npy")


def scaled_gradient(X, y, coef, intercept, C) -> np.ndarray:
    """Gradient of sum_i logloss + ||W||^2 / (2C) (weights and intercept), float64."""
    X = np.asarray(X, np.float64)
    logits = X @ coef.T + intercept
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return np.concatenate([(p.T @ X + coef / C).ravel(), p.sum(axis=0)])


def rescore(saved: dict, npz) -> None:
    """The JSON's numbers from the npz alone, and the npz's predictions from the features."""
    label, pred, top = npz["test_label"], npz["test_pred"], npz["test_top5"]
    X, y = cached(saved["features"]["test"])
    np.testing.assert_array_equal(label, y)
    assert saved["metric"] == "top1"
    assert saved["score"] == pytest.approx((pred == label).mean() * 100, abs=1e-9)
    np.testing.assert_array_equal(top[:, 0], pred)
    scores = X.astype(np.float64) @ npz["coef"].T + npz["intercept"]
    np.testing.assert_array_equal(np.argmax(scores, axis=1), pred)
    assert float(npz["C"]) == saved["C"]


def test_digits_run_is_rescored_and_its_gradient_checked(dirs) -> None:
    rec = run(compose_cfg(dirs))
    saved, npz = load_run(rec)
    rescore(saved, npz)
    k, d = saved["num_classes"], saved["feature_dim"]
    assert npz["coef"].shape == (k, d) and npz["intercept"].shape == (k,)
    assert npz["test_top5"].shape == (saved["n_test"], 5)
    hits = (npz["test_top5"] == npz["test_label"][:, None]).any(axis=1)
    assert saved["top5"] == pytest.approx(hits.mean() * 100) and saved["top5"] >= saved["score"]
    # the refit data is all of the train source split (val is carved from it): the head is
    # the optimum at its own C, and not at another
    X, y = cached(saved["features"]["train"])
    coef, b, C = npz["coef"], npz["intercept"], float(npz["C"])
    g = np.abs(scaled_gradient(X, y, coef, b, C)).max()
    g0 = np.abs(scaled_gradient(X, y, 0 * coef, 0 * b, C)).max()
    print(f"max |scaled gradient| at the head {g:.3g}, at zero {g0:.3g}")
    assert g <= 1e-3 * g0, (g, g0)
    assert np.abs(scaled_gradient(X, y, coef, b, C / 10)).max() > 30 * g
    # the table reader reads the JSON and nothing else
    results, bad = scan_results([Path(rec["path"]).parents[1]])
    assert [r.path for r in results] == [Path(rec["path"])] and not bad
    # a run with the shipped configs is a plain protocol run (but for the harness commit,
    # dirty while these tests run from an edited checkout)
    assert [f for f in protocol_flags(saved) if not f.startswith("harness commit")] == []
    shipped = OmegaConf.load(CONFIGS / "probe" / "torch.yaml").max_iter
    config = {**saved["config"], "probe": {**saved["config"]["probe"], "max_iter": shipped - 1},
              "encoder": {**saved["config"]["encoder"], "dtype": "bfloat16"}}  # fmt: skip
    flags = protocol_flags({**saved, "config": config})
    assert [f for f in flags if not f.startswith("harness commit")] == [
        f"probe.max_iter={shipped - 1} (configs/probe/torch.yaml: {shipped})"
    ]  # pixels compute in float32 whatever encoder.dtype says (`dtype`): not a dtype change


def test_few_classes_and_a_class_absent_from_train(dirs, tmp_path: Path) -> None:
    """K=4 with class 3 never seen in training: intercept -inf in the npz (it can never be
    predicted), 4 top-k columns with it last, no top5 in the JSON."""
    rng = np.random.default_rng(0)
    means = rng.normal(size=(3, 6)) * 2
    y_train, y_test = np.arange(120) % 3, np.arange(45) % 3
    path = tmp_path / "f.npz"
    np.savez(path, x_train=(means[y_train] + rng.normal(size=(120, 6))).astype(np.float32),
             y_train=y_train, x_test=(means[y_test] + rng.normal(size=(45, 6))).astype(np.float32),
             y_test=y_test)  # fmt: skip
    args = [*dirs, "encoder=precomputed", "dataset=npz", f"dataset.path={path}",
            "dataset.num_classes=4"]  # fmt: skip
    for backend in ("torch", "sklearn"):
        rec = run(compose_cfg([*args, f"probe={backend}"]))
        saved, npz = load_run(rec)
        assert saved["top5"] is None and npz["test_top5"].shape == (45, 4)
        assert np.isneginf(npz["intercept"][3]) and np.isfinite(npz["intercept"][:3]).all()
        assert (npz["test_top5"][:, 3] == 3).all()
        rescore(saved, npz)
        X, y = cached(saved["features"]["train"])
        g = scaled_gradient(X, y, npz["coef"], npz["intercept"], float(npz["C"]))
        assert np.isfinite(g).all()
