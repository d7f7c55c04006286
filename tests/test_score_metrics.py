"""The metrics read from a head's scores (CLIP Table 9): ROC AUC and the mean of top-1 and top-5.

Each metric against a direct implementation on fixed scores, the search choosing C by it,
end-to-end runs on `dataset=npz`, their intervals, the refusals, and a table column.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_cfg
from resultkit import write_result
from sklearn.metrics import roc_auc_score
from tablekit import linear, table_cfg
from test_table import md_row

from probe.core.errors import ProbeError
from probe.evaluations import bootstrap as B
from probe.evaluations.auc_bootstrap import auc_ci, paired_auc_ci
from probe.evaluations.linear import GRID, fit_score, search
from probe.evaluations.metrics import auc_rows, roc_auc, score, top1_top5_mean
from probe.evaluations.search import clip_binary
from probe.report.tables.write import make_table
from probe.run import run
from probe.solvers.base import Fit, Solver

OPTS = {"resamples": 200, "level": 0.95, "seed": 0}


def test_roc_auc_equals_scikit_learn_with_ties() -> None:
    y = np.array([0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0])
    s = np.array([0.1, 0.4, 0.4, 0.8, 0.4, -1.0, 0.8, 2.0, 0.1, 0.1, -np.inf, 0.4], np.float32)
    finite = np.where(np.isinf(s), -1e30, s)  # scikit-learn refuses -inf (a class never seen)
    assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, finite) * 100, abs=1e-12)
    assert roc_auc(np.zeros(4), [0, 1, 1, 0]) == 50.0  # all tied: one half
    assert roc_auc([3.0, 1.0, 2.0], [1, 0, 0]) == 100.0 and roc_auc([1.0, 2.0], [1, 0]) == 0.0
    # a resample's counts weigh each image: the AUC of the rows repeated, ties and no ties
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 3, (5, len(y)))
    counts[:, :2] = 1  # both classes in every resample
    for scores in (finite, rng.normal(size=len(y))):
        want = [roc_auc_score(np.repeat(y, c), np.repeat(scores, c)) for c in counts]
        np.testing.assert_allclose(auc_rows(scores, y, counts), want, atol=1e-12)
    with pytest.raises(ProbeError, match=r"both classes.*found \[1\]"):
        roc_auc([0.2, 0.3], [1, 1])
    with pytest.raises(ProbeError, match="NaN"):
        roc_auc([np.nan, 0.3], [0, 1])


def test_top1_top5_mean_by_hand() -> None:
    y = np.array([3, 0, 7, 2])
    top = np.array([[3, 1, 2, 4, 5],  # top-1 right
                    [1, 0, 2, 3, 4],  # top-5 only
                    [0, 1, 2, 3, 4],  # neither
                    [2, 9, 8, 7, 6]])  # fmt: skip  # top-1 right
    assert top1_top5_mean(top, y) == pytest.approx((2 / 4 + 3 / 4) / 2 * 100)
    np.testing.assert_array_equal(B.top15_category(top, y), [2, 1, 0, 2])
    with pytest.raises(ProbeError, match="score_outputs"):
        score(top[:, 0], y, "top1_top5_mean")


class TwoHeads(Solver):
    """C < 1: val ranked perfectly, all called positive (accuracy 50, AUC 100); C >= 1: a
    good threshold on a poor ranking (accuracy 75, AUC 56.25)."""

    def fit(self, X, y, *, C, num_classes, init=None) -> Fit:
        coef, b = ([[0, 0], [1, 0]], [0.0, 100.0]) if C < 1 else ([[0, 0], [0, 1]], [0.0, 0.0])
        return Fit(coef=np.array(coef, float), intercept=np.array(b), iterations=1,
                   converged=True, C=C)  # fmt: skip


def test_the_search_chooses_C_by_val_auc() -> None:
    X = np.array([[0, -1], [1, -1], [2, -1], [3, 2], [4, 1], [5, 1], [6, 1], [7, -2]], float)
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    picked = {}
    for metric in ("top1", "roc_auc"):
        found = search(solver=TwoHeads(), train=(X, y), val=(X, y), num_classes=2, metric=metric)
        picked[metric] = found.best_C
        values = {r["val_score"] for r in found.records}
        assert values == ({50.0, 75.0} if metric == "top1" else {100.0, 56.25})
    assert picked == {"top1": 1.0, "roc_auc": GRID[0]}
    head = TwoHeads().fit(X, y, C=1.0, num_classes=2)
    assert fit_score(TwoHeads(), head, (X, y), "top1") == score(TwoHeads().predict(head, X), y,
                                                                "top1")  # fmt: skip


def binary_npz(path: Path, *, classes: int = 2) -> Path:
    def draw(n: int, seed: int):
        rng = np.random.default_rng(seed)
        y = (np.arange(n) % classes).astype(np.int64)
        means = np.random.default_rng(42).normal(size=(classes, 6))
        return (0.5 * means[y] + rng.normal(size=(n, 6))).astype(np.float32), y

    (xtr, ytr), (xte, yte) = draw(240, 0), draw(96, 1)
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return path


def npz_run(dirs: list[str], path: Path, *extra: str) -> dict:
    return run(compose_cfg([*dirs, "encoder=precomputed", "dataset=npz", f"dataset.path={path}",
                            "bootstrap.resamples=20", "probe.tol=1e-2", *extra]))  # fmt: skip


def replay(record: dict) -> float:
    """The C the CLIP search picks from the recorded val scores alone."""
    strategy, val = clip_binary(), {r["C"]: r["val_score"] for r in record["search"]}
    return float(strategy.grid[strategy.choose(
        lambda pts: {k: val[float(strategy.grid[k])] for k in pts})])  # fmt: skip


def test_roc_auc_end_to_end_on_npz_and_a_label_metric_unchanged(dirs, tmp_path: Path) -> None:
    path = binary_npz(tmp_path / "memes.npz")
    rec = npz_run(dirs, path, "dataset.metric=roc_auc")
    assert rec["metric"] == "roc_auc" and rec["top5"] is None and "top1" not in rec
    assert rec["C"] == replay(rec)  # chosen on the val AUCs the search recorded
    low, high = rec["score_ci"]
    assert low <= rec["score"] <= high and high - low > 0
    head = np.load(rec["head"]["path"])
    X = np.load(path)["x_test"]
    w, b = head["coef"][1] - head["coef"][0], head["intercept"][1] - head["intercept"][0]
    np.testing.assert_allclose(head["test_score"], X @ w + b, rtol=1e-4, atol=1e-4)
    assert rec["score"] == pytest.approx(roc_auc_score(head["test_label"], head["test_score"])
                                         * 100, abs=1e-9)  # fmt: skip
    assert rec["score_ci"] == auc_ci(head["test_score"], head["test_label"], resamples=20,
                                     level=0.95, seed=0)  # fmt: skip
    # the same features scored by top-1: no decision values saved, the label path's fields
    top1 = npz_run(dirs, path, "dataset.name=memes_top1")
    assert "test_score" not in np.load(top1["head"]["path"]).files and "top1" not in top1
    assert top1["score"] == pytest.approx((head_pred(top1) == head_label(top1)).mean() * 100)


def head_pred(rec: dict) -> np.ndarray:
    return np.load(rec["head"]["path"])["test_pred"]


def head_label(rec: dict) -> np.ndarray:
    return np.load(rec["head"]["path"])["test_label"]


def test_top1_top5_mean_end_to_end_on_npz(dirs, tmp_path: Path) -> None:
    rec = npz_run(dirs, binary_npz(tmp_path / "clips.npz", classes=8),
                  "dataset.metric=top1_top5_mean")  # fmt: skip
    top = np.load(rec["head"]["path"])["test_top5"]
    y = head_label(rec)
    assert top.shape == (96, 5) and rec["C"] == replay(rec)
    assert rec["score"] == pytest.approx((rec["top1"] + rec["top5"]) / 2, abs=1e-9)
    assert rec["score"] == pytest.approx(top1_top5_mean(top, y), abs=1e-9)
    assert rec["score_ci"][0] <= rec["score"] <= rec["score_ci"][1]


def test_intervals_of_the_score_metrics() -> None:
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], [120, 80])
    s = rng.normal(size=200) + y
    ci = auc_ci(s, y, **OPTS)
    assert ci == auc_ci(s, y, **OPTS) and ci != auc_ci(s, y, **{**OPTS, "seed": 1})
    assert ci[0] < roc_auc(s, y) < ci[1] and 5 < ci[1] - ci[0] < 25
    assert paired_auc_ci(s, s, y, **OPTS) == [0.0, 0.0]
    worse = s + rng.normal(size=200) * 2
    low, high = paired_auc_ci(s, worse, y, **OPTS)
    assert low <= roc_auc(s, y) - roc_auc(worse, y) <= high
    # mean(top1, top5): the images' two outcomes drawn together, one stratum
    k = 50
    y = np.arange(2000) % k
    top = (y[:, None] + np.arange(5)[None, :] + rng.integers(-2, 2, (2000, 1))) % k
    ci = B.top1_top5_ci(top, y, **OPTS)
    assert ci[0] < top1_top5_mean(top, y) < ci[1]
    assert B.paired_top1_top5_ci(top, top, y, **OPTS) == [0.0, 0.0]
    fields = B.interval_fields(pred=top[:, 0], y=y, metric="top1_top5_mean", top5=top, **OPTS)
    assert fields["score_ci"] == ci and fields["top5_ci"][1] <= 100.0
    with pytest.raises(ProbeError, match="auc_ci"):
        B.score_ci(top[:, 0] == y, y, metric="roc_auc")


def test_knn_and_fewshot_refuse_a_score_metric_and_class_counts_are_checked(dirs, tmp_path):
    for evaluation in ("knn", "fewshot"):
        with pytest.raises(ProbeError) as err:
            run(compose_cfg([*dirs, f"eval={evaluation}", "dataset.metric=roc_auc"]))
        msg = str(err.value)
        assert msg.startswith("dataset digits is scored by roc_auc, read from a head's per-")
        assert f"eval={evaluation} gives one predicted class" in msg and "use eval=linear" in msg
    with pytest.raises(ProbeError, match=r"roc_auc scores two classes .* has 10; use"):
        run(compose_cfg([*dirs, "dataset.metric=roc_auc"]))
    with pytest.raises(ProbeError, match="top1_top5_mean needs more than 5 classes"):
        npz_run(dirs, binary_npz(tmp_path / "three.npz", classes=3),
                "dataset.metric=top1_top5_mean")  # fmt: skip
    from probe import api

    X, y = np.random.default_rng(0).normal(size=(30, 4)), np.arange(30) % 3
    with pytest.raises(ProbeError, match="dataset arrays: dataset.metric=roc_auc scores two"):
        api.linear_probe((X, y), (X, y), metric="roc_auc")
    with pytest.raises(ProbeError, match="eval=knn gives one predicted class"):
        api.knn_probe((X, y % 2), (X, y % 2), metric="roc_auc")


def test_params_know_every_metric() -> None:
    from probe.core.params import RULES
    from probe.datasets.base import METRICS

    assert RULES["dataset.metric"].options == METRICS


def write_scored(root: Path, encoder: str, dataset: str, metric: str, output: np.ndarray,
                 y: np.ndarray, score_value: float) -> None:  # fmt: skip
    """A done linear result whose head holds what `metric` reads."""
    path = root / encoder / f"{dataset}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "test_score" if metric == "roc_auc" else "test_top5"
    np.savez(
        path.with_suffix(".npz"),
        coef=np.zeros((2, 3)),
        intercept=np.zeros(2),
        C=np.float64(1.0),
        test_label=y,
        test_pred=np.zeros_like(y),
        **{key: output},
    )
    sha = hashlib.sha256(path.with_suffix(".npz").read_bytes()).hexdigest()
    record = linear(encoder, dataset, score_value, metric=metric, test_content_hash=dataset,
                    score_ci=[score_value - 2.0, score_value + 2.0])  # fmt: skip
    write_result(path, {**record, "head": {"path": str(path.with_suffix(".npz")), "sha256": sha}})


def test_a_table_column_of_each_score_metric(tmp_path: Path) -> None:
    """mlcd_l14 and mlcd_b32 share their outputs (a zero paired difference); clip_l14 is worse."""
    rng = np.random.default_rng(0)
    results, pub = tmp_path / "results", tmp_path / "published"
    y_auc, y_k = np.arange(60) % 2, np.arange(300) % 20
    good = y_auc + rng.normal(size=60) * 0.5
    outputs = {"mlcd_l14": good, "clip_l14": y_auc + rng.normal(size=60) * 2.0, "mlcd_b32": good}
    for enc, s in outputs.items():
        write_scored(results, enc, "hm", "roc_auc", s, y_auc, roc_auc(s, y_auc))
        miss = (rng.random(300) < (0.6 if enc == "clip_l14" else 0.2)).astype(int) * 3
        top = (y_k[:, None] + miss[:, None] + np.arange(5)) % 20
        write_scored(results, enc, "k7", "top1_top5_mean", top, y_k, top1_top5_mean(top, y_k))
    ours = roc_auc(good, y_auc)
    pub.mkdir()
    rows = [f"mlcd_l14,hm,roc_auc,{ours:.2f},test,", "clip_l14,hm,roc_auc,99.00,test,",
            "mlcd_l14,k7,top1_top5_mean,50.00,test,"]  # fmt: skip
    (pub / "s.csv").write_text("encoder,dataset,metric,score,source,note\n" + "\n".join(rows))
    overrides = [f"results_dir={results}", f"published_dir={pub}", "table.name=s",
                 "table.published=s.csv", "table.grid=null", "table.rows.values=[hm,k7]",
                 f"table.columns.values=[{','.join(outputs)}]", "table.labels={}"]  # fmt: skip
    table, _, md = make_table(table_cfg("mlcd_linear_probe", overrides))
    hm = md_row(md, "hm")
    assert hm[1].replace("*", "").rstrip("\u2020") == f"{ours:.2f} ± 2.00"
    assert hm[2] == f"{ours:.2f}" and hm[4] == "yes" and hm[8] == "no"
    pairs = {(p.dataset, p.b): p for p in table.pairs}
    assert pairs[("hm", "mlcd_b32")].interval == [0.0, 0.0]  # the same decision values
    assert pairs[("hm", "clip_l14")].significant and pairs[("k7", "clip_l14")].significant
    assert pairs[("k7", "mlcd_b32")].why is None
    assert "Refused" not in md
