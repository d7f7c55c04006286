"""The Python API: `LinearProbe` (a scikit-learn estimator) and the evaluations as functions,
checked against the CLI on the same features, and against scikit-learn's own checks."""

from __future__ import annotations

import json
import logging
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_cfg

from probe import LinearProbe, fewshot_probe, knn_probe, linear_probe, load_results, model_index
from probe.run import run


def digits() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return X[:600], y[:600], X[600:1000], y[600:1000]  # sklearn's search: 1.5 s, not 37


def blobs(n: int = 600, *, d: int = 20, k: int = 5, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(7).normal(size=(k, d))
    y = rng.integers(0, k, n)
    X = (means[y] + rng.normal(size=(n, d)) * 1.3).astype(np.float32)
    return X[: n * 3 // 4], y[: n * 3 // 4], X[n * 3 // 4 :], y[n * 3 // 4 :]


@pytest.mark.parametrize("backend", ["torch", "sklearn"])
@pytest.mark.parametrize("problem", [digits, blobs])
def test_estimator_and_functions_match_the_cli(problem, backend, dirs, tmp_path: Path) -> None:
    """The same features through `python -m probe encoder=precomputed dataset=npz`, through
    `LinearProbe` and through `probe.linear_probe`: the same C, score, interval and
    test predictions (the CLI's carve and the estimator's default carve are one)."""
    Xtr, ytr, Xte, yte = problem()
    path = tmp_path / "f.npz"
    np.savez(path, x_train=Xtr, y_train=ytr, x_test=Xte, y_test=yte)
    cli = run(compose_cfg([*dirs, "encoder=precomputed", "dataset=npz", f"dataset.path={path}",
                           f"probe={backend}"]))  # fmt: skip
    with np.load(cli["head"]["path"]) as head:
        cli_pred = head["test_pred"]
    est = LinearProbe(backend=backend).fit(Xtr, ytr)
    assert est.C_ == cli["C"] and [r["C"] for r in est.search_] == [r["C"] for r in cli["search"]]
    np.testing.assert_array_equal(est.predict(Xte), cli_pred)
    assert est.score(Xte, yte) * 100 == pytest.approx(cli["score"])
    rec = linear_probe((Xtr, ytr), (Xte, yte), backend=backend)
    for key in ("C", "score", "score_ci", "top5", "n_train", "n_val", "n_test", "converged"):
        assert rec[key] == cli[key], key


def test_labels_of_any_values_round_trip() -> None:
    Xtr, ytr, Xte, yte = blobs()
    names = np.array(["cat", "dog", "emu", "fox", "gnu"])
    odd = np.array([3, 10, 11, 40, 99])
    base = LinearProbe(C=0.5).fit(Xtr, ytr)
    for labels in (names, odd):
        est = LinearProbe(C=0.5).fit(Xtr, labels[ytr])
        assert list(est.classes_) == sorted(labels.tolist())
        np.testing.assert_array_equal(est.predict(Xte), labels[base.predict(Xte)])
        assert est.score(Xte, labels[yte]) == base.score(Xte, yte)
    rec = linear_probe((Xtr, names[ytr]), (Xte, names[yte]))
    assert rec["classes"] == names.tolist() and rec["num_classes"] == 5


def test_tensors_fit_as_arrays_and_the_estimator_pickles(tmp_path: Path) -> None:
    Xtr, ytr, Xte, yte = blobs()
    arrays = LinearProbe().fit(Xtr, ytr)
    tensors = LinearProbe().fit(torch.from_numpy(Xtr), torch.from_numpy(ytr))
    assert tensors.C_ == arrays.C_
    np.testing.assert_allclose(tensors.coef_, arrays.coef_, atol=1e-4)
    np.testing.assert_array_equal(tensors.predict(torch.from_numpy(Xte)), arrays.predict(Xte))
    again = pickle.loads(pickle.dumps(arrays))
    np.testing.assert_array_equal(again.predict_proba(Xte), arrays.predict_proba(Xte))
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32,
                                   shape=Xtr.shape)  # fmt: skip
    mm[:] = Xtr
    mapped = LinearProbe().fit(np.load(tmp_path / "x.npy", mmap_mode="r"), ytr)
    assert mapped.C_ == arrays.C_
    np.testing.assert_array_equal(mapped.coef_, arrays.coef_)


def test_binary_probe_has_scikit_learns_shapes() -> None:
    Xtr, ytr, Xte, yte = blobs(k=2)
    est = LinearProbe(C=1.0).fit(Xtr, ytr)
    assert est.coef_.shape == (1, 20) and est.intercept_.shape == (1,)
    assert est.decision_function(Xte).shape == (len(Xte),)
    proba = est.predict_proba(Xte)
    assert proba.shape == (len(Xte), 2) and np.allclose(proba.sum(1), 1)
    np.testing.assert_array_equal(est.predict(Xte), proba.argmax(1))


def test_clone_grid_search_pipeline_and_cross_val() -> None:
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xtr, ytr, _, _ = blobs()
    assert clone(LinearProbe(C=2.0, backend="sklearn")).get_params()["C"] == 2.0
    grid = GridSearchCV(LinearProbe(), {"C": [0.01, 1.0, 100.0]}, cv=3).fit(Xtr, ytr)
    assert grid.best_params_["C"] in (0.01, 1.0, 100.0) and grid.best_score_ > 0.5
    scores = cross_val_score(make_pipeline(StandardScaler(), LinearProbe(C=1.0)), Xtr, ytr, cv=3)
    assert len(scores) == 3 and scores.min() > 0.5


@pytest.mark.parametrize("C", ["search", 1.0])
def test_scikit_learn_estimator_checks(C) -> None:
    """Every check of `check_estimator` passes but `check_array_api_input`: array-API
    namespaces (CuPy, array-api-strict) are not inputs we take (torch tensors are)."""
    from sklearn.utils.estimator_checks import check_estimator

    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = check_estimator(LinearProbe(C=C), on_fail=None)
    finally:
        logging.disable(logging.NOTSET)
    failed = {r["check_name"]: str(r["exception"]) for r in results if r["status"] != "passed"}
    assert set(failed) == {"check_array_api_input"}, failed
    assert len(results) > 50


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"X": np.full((20, 3), np.nan)}, "NaN"),
        ({"X": np.full((20, 3), np.inf)}, "infinity"),
        ({"y": np.zeros(19, int)}, "inconsistent numbers of samples|19"),
        ({"y": np.zeros(20, int)}, "one class"),
        ({"X": np.ones(20)}, "Reshape your data"),
        ({"y_val": np.full(6, 7)}, "absent from y: \\[7\\]"),
        ({"X_val": np.ones((6, 4))}, "X_val has 4 features"),
    ],
)
def test_bad_input_is_one_value_error_and_fits_nothing(change, message) -> None:
    rng = np.random.default_rng(0)
    data = {"X": rng.normal(size=(20, 3)), "y": np.arange(20) % 2, "X_val": rng.normal(size=(6, 3)),
            "y_val": np.arange(6) % 2, **change}  # fmt: skip
    est = LinearProbe()
    with pytest.raises(ValueError, match=message) as err:
        est.fit(data["X"], data["y"], data["X_val"], data["y_val"])
    assert "\n" not in str(err.value)
    assert not any(hasattr(est, a) for a in ("coef_", "classes_", "C_", "search_"))


def test_functions_write_where_the_cli_would_and_the_table_reads_them(tmp_path: Path) -> None:
    Xtr, ytr, Xte, yte = digits()
    rec = linear_probe((Xtr, ytr), (Xte, yte), encoder="mine", dataset="digits",
                       results_dir=tmp_path)  # fmt: skip
    path = tmp_path / "mine" / "digits.json"
    assert rec["path"] == str(path) and json.loads(path.read_text())["score"] == rec["score"]
    assert (tmp_path / "mine" / "digits.npz").is_file() and rec["head"]["sha256"]
    knn = knn_probe((Xtr, ytr), (Xte, yte), k=[1, 5], encoder="mine", dataset="digits",
                    results_dir=tmp_path)  # fmt: skip
    assert knn["path"].endswith("digits.knn.json") and knn["k"] in (1, 5)
    few = fewshot_probe((Xtr, ytr), (Xte, yte), shots=[1, 2], seeds=2)
    assert "path" not in few and few["by_k"]["2"]["score_ci"][0] <= few["by_k"]["2"]["mean"]
    assert few["versions"]["probe"] and "git" in few and few["created"]


def test_load_results_and_the_model_card_block(tmp_path: Path) -> None:
    """One row per done result of every evaluation; a damaged file is reported, not fatal;
    the model-index block names task, dataset, metric and value, and leaves flagged runs out
    unless asked."""
    import yaml

    Xtr, ytr, Xte, yte = digits()
    lin = linear_probe((Xtr, ytr), (Xte, yte), encoder="mine", dataset="digits",
                       results_dir=tmp_path)  # fmt: skip
    knn_probe((Xtr, ytr), (Xte, yte), k=[1, 5], encoder="mine", dataset="digits",
              results_dir=tmp_path)  # fmt: skip
    (tmp_path / "mine" / "other.json").write_text('{"encoder": "mine", "dataset": "oth')
    frame = load_results(tmp_path)
    assert sorted(frame["eval"]) == ["knn", "linear"] and len(frame) == 2
    row = frame[frame["eval"] == "linear"].iloc[0]
    assert (row.score, row.C, [row.score_low, row.score_high]) == (lin["score"], lin["C"],
                                                                   lin["score_ci"])  # fmt: skip
    assert row.level == 0.95 and row.flags and row.path == lin["path"]
    assert any("other.json" in b for b in frame.attrs["bad_files"])
    with pytest.raises(Exception, match="flagged"):
        model_index(tmp_path, "mine")  # API results name no shipped configs: all flagged
    block = yaml.safe_load(model_index(tmp_path, "mine", include_flagged=True))["model-index"]
    entries = {e["task"]["name"].split(" ")[0]: e for e in block[0]["results"]}
    assert block[0]["name"] == "mine" and set(entries) == {"Linear", "k-NN"}
    metric = entries["Linear"]["metrics"][0]
    assert metric["type"] == "accuracy" and metric["value"] == round(lin["score"], 2)
    assert metric["args"]["C"] == lin["C"] and metric["args"]["not_a_plain_protocol_run"]


def test_model_index_from_the_command_line(tmp_path: Path) -> None:
    """`python -m probe.table format=model-index card=mine` on a result the API wrote."""
    import subprocess
    import sys

    Xtr, ytr, Xte, yte = blobs()
    linear_probe((Xtr, ytr), (Xte, yte), encoder="mine", dataset="blobs", results_dir=tmp_path)
    args = ["format=model-index", "card=mine", "include_flagged=true", f"results_dir={tmp_path}"]
    proc = subprocess.run([sys.executable, "-m", "probe.table", *args], cwd=tmp_path,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "model-index:" in proc.stdout and "type: blobs" in proc.stdout
    assert (tmp_path / "tables" / "mine.model-index.yaml").is_file()
    bad = subprocess.run([sys.executable, "-m", "probe.table", "format=model-index",
                          f"results_dir={tmp_path}"], cwd=tmp_path, capture_output=True,
                         text=True)  # fmt: skip
    assert bad.returncode == 2 and "needs card=ENCODER" in bad.stderr + bad.stdout


def test_the_docs_example_runs_as_written(tmp_path: Path, monkeypatch) -> None:
    """Every python block of docs/api.md, in order, in one namespace (no network: the ViT
    has random weights)."""
    import re

    from conftest import REPO

    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "api.md").read_text(), re.S)
    assert len(blocks) >= 5
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)
    assert namespace["rec"]["score_ci"][0] < namespace["rec"]["score"]
    assert namespace["probe"].score(namespace["feats_test"], namespace["labels"][1300:]) > 0.5
