"""Bootstrap intervals, the k-NN probe and few-shot draws, on their own (no files)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from probe.core.errors import ProbeError
from probe.datasets.splits import stratified_holdout
from probe.evaluations.bootstrap import paired_diff_ci, score_ci, significance
from probe.evaluations.fewshot import check_shots, draw, fewshot
from probe.evaluations.knn import evaluate as knn_evaluate
from probe.evaluations.knn import knn_predict
from probe.evaluations.outcome import Task
from probe.solvers.sklearn import SklearnSolver


def test_interval_covers_a_known_proportion_at_the_nominal_rate() -> None:
    """400 simulated test sets of 200 images with true accuracy 80%: ~95% of intervals
    cover 80 (the binomial standard error of a coverage over 400 draws is 1.1 points)."""
    rng = np.random.default_rng(7)
    covered = 0
    for rep in range(400):
        correct = rng.random(200) < 0.8
        low, high = score_ci(correct, np.zeros(200, int), metric="top1", seed=rep)
        covered += low <= 80.0 <= high
    assert 0.91 <= covered / 400 <= 0.98, covered / 400


def test_stratified_interval_covers_a_known_mean_per_class() -> None:
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1, 2], [40, 100, 60])
    p = np.array([0.5, 0.9, 0.7])
    covered = 0
    for rep in range(300):
        correct = rng.random(len(y)) < p[y]
        low, high = score_ci(correct, y, metric="mean_per_class", seed=rep)
        covered += low <= p.mean() * 100 <= high
    assert 0.90 <= covered / 300 <= 0.985, covered / 300


def test_interval_is_seeded_and_brackets_the_score() -> None:
    rng = np.random.default_rng(0)
    correct, y = rng.random(500) < 0.6, rng.integers(0, 5, 500)
    a = score_ci(correct, y, metric="mean_per_class", seed=11)
    assert a == score_ci(correct, y, metric="mean_per_class", seed=11)
    assert a != score_ci(correct, y, metric="mean_per_class", seed=12)
    mpc = np.mean([correct[y == c].mean() for c in range(5)]) * 100
    assert a[0] < mpc < a[1]


def test_paired_interval_of_identical_predictions_is_zero() -> None:
    rng = np.random.default_rng(1)
    correct, y = rng.random(300) < 0.7, rng.integers(0, 4, 300)
    for metric in ("top1", "mean_per_class"):
        assert paired_diff_ci(correct, correct, y, metric=metric) == [0.0, 0.0]
        assert not significance([0.0, 0.0])
    assert paired_diff_ci(np.ones(50, bool), np.zeros(50, bool), np.zeros(50, int),
                          metric="top1") == [100.0, 100.0]  # fmt: skip


def test_paired_interval_finds_a_real_difference_and_not_a_fake_one() -> None:
    rng = np.random.default_rng(2)
    y = np.zeros(2000, int)
    base = rng.random(2000) < 0.7
    better = base | (rng.random(2000) < 0.2)  # right wherever base is, and on ~6% more
    assert significance(paired_diff_ci(better, base, y, metric="top1"))
    shuffled = rng.permutation(base)  # same accuracy, independent errors
    assert not significance(paired_diff_ci(shuffled, base, y, metric="top1"))


def _direct_knn(queries, bank, labels, k, temperature, num_classes):
    """The voting rule written out plainly: full similarity matrix, sort, sum weights."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    sims = q @ b.T
    preds = []
    for row in sims:
        top = np.argsort(-row, kind="stable")[:k]
        votes = np.zeros(num_classes)
        for j in top:
            votes[labels[j]] += np.exp(row[j] / temperature)
        preds.append(int(np.argmax(votes)))
    return np.array(preds)


def test_knn_predictions_equal_a_direct_implementation() -> None:
    rng = np.random.default_rng(5)
    centers = rng.normal(size=(4, 16))
    labels = rng.integers(0, 4, 90)
    bank = centers[labels] + rng.normal(scale=1.5, size=(90, 16))
    qlab = rng.integers(0, 4, 37)
    queries = centers[qlab] + rng.normal(scale=1.5, size=(37, 16))
    parts = [bank[:60].astype(np.float32), bank[60:].astype(np.float32)]
    got = knn_predict(queries=queries.astype(np.float32), bank=parts, bank_labels=labels,
                      ks=[1, 5, 20], temperature=0.07, num_classes=4, query_chunk=7,
                      bank_chunk=13)  # fmt: skip
    for k in (1, 5, 20):
        np.testing.assert_array_equal(got[k], _direct_knn(queries, bank, labels, k, 0.07, 4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"ks": [0, 10]}, "eval.k="), ({"ks": [500]}, "more than the"),
     ({"ks": [5], "temperature": 0.0}, "eval.temperature=")],
)  # fmt: skip
def test_knn_bad_values_get_one_line_errors(kwargs, message) -> None:
    x = np.ones((10, 3), np.float32)
    opts = {"ks": [5], "temperature": 0.07, **kwargs}
    with pytest.raises(ProbeError, match=message) as err:
        knn_predict(queries=x, bank=[x], bank_labels=np.zeros(10, int), num_classes=2, **opts)
    assert "\n" not in str(err.value)


def test_fewshot_draw_is_balanced_nested_and_disjoint_from_val() -> None:
    y = np.repeat(np.arange(5), [30, 30, 30, 30, 3])  # class 4 is short
    keep, hold = stratified_holdout(y, fraction=0.2, seed=0)
    for k in (1, 2, 4):
        rows = keep[draw(y[keep], k=k, seed=3)]  # back to source-split rows
        counts = np.bincount(y[rows], minlength=5)
        assert list(counts[:4]) == [k] * 4 and counts[4] == min(k, (y[keep] == 4).sum())
        assert not set(rows) & set(hold)
        if k > 1:
            smaller = keep[draw(y[keep], k=k // 2, seed=3)]
            assert set(smaller) <= set(rows)
    assert not np.array_equal(draw(y, k=4, seed=0), draw(y, k=4, seed=1))


def test_fewshot_draw_is_identical_across_processes() -> None:
    """A fresh interpreter (its own hash seed) draws what this one draws."""
    code = (
        "import numpy as np; from probe.evaluations.fewshot import draw; "
        "y = np.arange(1000) % 7; print(draw(y, k=5, seed=4).tolist())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    ).stdout
    assert out == str(draw(np.arange(1000) % 7, k=5, seed=4).tolist()) + "\n"


def test_fewshot_bad_values_get_one_line_errors() -> None:
    y = np.repeat(np.arange(3), 4)
    for shots, seeds, message in (([0, 2], 2, "eval.shots="), ([8], 2, "more than any class"),
                                  ([2], 0, "eval.seeds=")):  # fmt: skip
        with pytest.raises(ProbeError, match=message) as err:
            check_shots(shots, seeds, y)
        assert "\n" not in str(err.value)


def _knn_task(rng, *, test_labels: np.ndarray | None = None) -> Task:
    """Three clusters; train also holds 5 rows per cluster labelled as the next class. Val
    repeats those odd rows (only k=1 gets them right); test is clean cluster points, where
    many votes win (test alone would choose the largest k)."""
    centres = np.eye(3, 8, dtype=np.float32) * 4 + 1
    y_tr = np.repeat(np.arange(3), 35)
    X_tr = centres[y_tr] + rng.normal(0, 0.5, (105, 8)).astype(np.float32)
    odd = np.flatnonzero(np.arange(105) % 35 >= 30)
    y_tr[odd] = (y_tr[odd] + 1) % 3
    X_va, y_va = X_tr[odd].copy(), y_tr[odd].copy()
    y_te = np.repeat(np.arange(3), 40) if test_labels is None else test_labels
    X_te = centres[np.repeat(np.arange(3), 40)] + rng.normal(0, 0.5, (120, 8)).astype(np.float32)
    return Task(train=(X_tr, y_tr), val=(X_va, y_va), test=(X_te, y_te), num_classes=3,
                metric="top1", device="cpu", make_solver=lambda: None)  # fmt: skip


def test_knn_chooses_k_on_val_never_on_test() -> None:
    """The record's k is the argmax of val scores (bank = train); test labels, even
    shuffled, cannot move it. On main `best_k` was the argmax of test scores."""
    task = _knn_task(np.random.default_rng(0))
    out = knn_evaluate(task, k=[1, 5, 25]).fields
    val = {int(k): v for k, v in out["val_score_by_k"].items()}
    test = {int(k): v for k, v in out["test_score_by_k"].items()}
    assert out["k"] == max(val, key=lambda k: (val[k], -k)) == 1 and val[1] == 100.0
    assert max(test, key=test.get) == 25 and test[25] > test[1]  # test would choose 25
    assert out["score"] == test[1] and out["score_ci"][0] <= out["score"] <= out["score_ci"][1]
    for labels in (np.random.default_rng(s).permutation(np.repeat(np.arange(3), 40))
                   for s in range(3)):  # fmt: skip
        again = knn_evaluate(_knn_task(np.random.default_rng(0), test_labels=labels), k=[1, 5, 25])
        assert again.fields["k"] == 1 and again.fields["val_score_by_k"] == out["val_score_by_k"]


def test_knn_k_larger_than_train_is_refused_for_the_val_search() -> None:
    task = _knn_task(np.random.default_rng(0))
    with pytest.raises(ProbeError, match="more than the 105 training images") as err:
        knn_evaluate(task, k=[110])  # 120 bank rows at test, but only 105 in train for val
    assert "\n" not in str(err.value)


def test_fewshot_std_is_null_with_one_seed() -> None:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    tr, te = stratified_holdout(y, count=450, seed=0)
    by_k = fewshot(solver=SklearnSolver(max_iter=200), train=(X[tr], y[tr]), val=(X[tr], y[tr]),
                   test=(X[te], y[te]), num_classes=10, metric="top1", shots=[2],
                   seeds=1)  # fmt: skip
    assert by_k["2"]["std"] is None and len(by_k["2"]["scores"]) == 1


def test_fewshot_on_digits_gives_every_k_and_seed() -> None:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    keep, test = stratified_holdout(y, count=450, seed=0)
    tr, va = stratified_holdout(y[keep], fraction=0.2, seed=0)
    train, val = (X[keep][tr], y[keep][tr]), (X[keep][va], y[keep][va])
    by_k = fewshot(solver=SklearnSolver(max_iter=200), train=train, val=val,
                   test=(X[test], y[test]), num_classes=10, metric="top1", shots=[1, 4],
                   seeds=2)  # fmt: skip
    assert list(by_k) == ["1", "4"]
    for k, entry in by_k.items():
        assert len(entry["scores"]) == len(entry["C"]) == 2
        assert entry["n_train"] == [10 * int(k)] * 2 and entry["classes_short"] == []
        assert entry["mean"] == pytest.approx(np.mean(entry["scores"]))
    assert by_k["4"]["mean"] > by_k["1"]["mean"] > 30.0


def test_each_eval_writes_its_own_result(dirs) -> None:
    from conftest import compose_cfg

    from probe.run import run

    linear = run(compose_cfg(dirs))
    knn = run(compose_cfg([*dirs, "eval=knn", "eval.k=[1,5]"]))
    few = run(compose_cfg([*dirs, "eval=fewshot", "eval.shots=[1,2]", "eval.seeds=2"]))
    paths = [r["path"] for r in (linear, knn, few)]
    assert [p.rsplit("/", 1)[1] for p in paths] == ["digits.json", "digits.knn.json",
                                                   "digits.fewshot.json"]  # fmt: skip
    low, high = linear["score_ci"]
    assert low < linear["score"] < high and high - low < 6  # 450 test images
    assert linear["top5_ci"][0] <= linear["top5"] <= linear["top5_ci"][1]
    assert set(knn["test_score_by_k"]) == set(knn["val_score_by_k"]) == {"1", "5"}
    assert knn["k"] in (1, 5) and knn["score"] == knn["test_score_by_k"][str(knn["k"])]
    assert knn["score_ci"][0] <= knn["score"] <= knn["score_ci"][1]
    assert knn["backend"] is None and knn["temperature"] == 0.07
    assert set(few["by_k"]) == {"1", "2"} and len(few["by_k"]["2"]["scores"]) == 2
    for entry in few["by_k"].values():  # the mean over seeds with its test-set interval
        assert entry["score_ci"][0] <= entry["mean"] <= entry["score_ci"][1]
    for rec in (knn, few):  # the provenance every result carries
        assert rec["n_test"] == 450 and rec["config"]["eval"]["name"] == rec["eval"]


def test_bad_eval_values_are_one_line_errors(dirs) -> None:
    from conftest import compose_cfg
    from hydra.errors import MissingConfigException

    from probe.run import run

    for override, message in (("eval.k=[0]", "eval.k="), ("eval.temperature=-1", "eval.temp")):
        with pytest.raises(ProbeError, match=message) as err:
            run(compose_cfg([*dirs, "eval=knn", override]))
        assert "\n" not in str(err.value)
    with pytest.raises(ProbeError, match="more than any class") as err:
        run(compose_cfg([*dirs, "eval=fewshot", "eval.shots=[5000]"]))
    with pytest.raises(MissingConfigException, match="eval/nope"):
        compose_cfg([*dirs, "eval=nope"])


def test_a_grid_over_evals_has_distinct_result_paths(tmp_path) -> None:
    from probe.launch.grid import expand, resolve_runs

    grid = {"name": "evals", "encoders": ["pixels"], "datasets": ["digits"],
            "variants": [["eval=linear"], ["eval=knn"], ["eval=fewshot"]]}  # fmt: skip
    runs = resolve_runs(expand(grid), results_dir=tmp_path)
    assert sorted(r.result.name for r in runs) == ["digits.fewshot.json", "digits.json",
                                                   "digits.knn.json"]  # fmt: skip
