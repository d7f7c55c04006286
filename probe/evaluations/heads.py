"""What a refitted head says about the test split, kept so a result can be rechecked.

The labels, the predictions the test score was computed from and the top-5 classes of every
test image (and, for a binary dataset scored by ROC AUC, each image's decision value): saved
beside the result (`probe.report.heads`), they let anyone re-score a run, or check its head
against the cached features, without refitting. The linear search scores val from the same
outputs when its metric reads scores (`metrics.score_outputs`).
"""

from __future__ import annotations

import numpy as np

from probe.solvers.base import Fit, Solver

TOP = 5


def test_outputs(
    solver: Solver,
    fit: Fit,
    test: tuple[np.ndarray, np.ndarray],
    *,
    chunk: int = 65536,
    decision: bool = False,
) -> dict[str, np.ndarray]:
    """`test_label`, `test_pred` (the backend's own predictions, as scored) and `test_top5`;
    with `decision` (a binary head), `test_score` too.

    Top-5 ranks come from float32 scores `X W^T + b` (min(5, K) columns); the predicted class
    is always column 0, so a near-tie the backend broke the other way (its device, its
    precision) cannot make the top-1 and top-5 records disagree. Classes absent from train
    (intercept -inf) rank last. `test_score` is the positive class's decision value
    `X (w_1 - w_0) + (b_1 - b_0)` in float32 (`multilabel.decision`'s binary head).
    """
    X, y = test
    pred = solver.predict(fit, X)
    k = min(TOP, len(fit.intercept))
    top = np.empty((len(X), k), dtype=np.int64)
    coef_t = np.asarray(fit.coef, np.float32).T
    for s in range(0, len(X), chunk):
        scores = np.asarray(X[s : s + chunk], np.float32) @ coef_t + fit.intercept
        top[s : s + chunk] = _pred_first(scores, pred[s : s + chunk], k)
    out = {"test_label": np.asarray(y, np.int64), "test_pred": pred, "test_top5": top}
    if decision:
        out["test_score"] = positive_scores(fit, X, chunk=chunk)
    return out


def positive_scores(fit: Fit, X: np.ndarray, *, chunk: int = 65536) -> np.ndarray:
    """(N,) float32 decision values of a two-class head for class 1: the binomial head
    scikit-learn fits (`coef_[0]`, `intercept_[0]`), read in row chunks."""
    if len(fit.intercept) != 2:
        raise ValueError(f"a decision value needs a two-class head, not {len(fit.intercept)}")
    w = (np.asarray(fit.coef[1], np.float64) - fit.coef[0]).astype(np.float32)
    b = np.float32(float(fit.intercept[1]) - float(fit.intercept[0]))
    out = np.empty(len(X), dtype=np.float32)
    for s in range(0, len(X), chunk):
        out[s : s + chunk] = np.asarray(X[s : s + chunk], np.float32) @ w + b
    return out


def _pred_first(scores: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """The k best classes per row by score (ties to the smaller index), `pred` first."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, : k + 1]
    cand = np.concatenate([pred[:, None], order], axis=1)
    dup = cand == pred[:, None]
    dup[:, 0] = False
    keep = np.argsort(dup, axis=1, kind="stable")  # the repeated pred moves to the end
    return np.take_along_axis(cand, keep, axis=1)[:, :k]


def top5_accuracy(outputs: dict[str, np.ndarray]) -> float | None:
    """Percent of test images whose label is among their 5 best classes; None when the
    dataset has fewer than 5 classes (top-5 would be trivially 100)."""
    top = outputs["test_top5"]
    if top.shape[1] < TOP:
        return None
    return float((top == outputs["test_label"][:, None]).any(axis=1).mean() * 100.0)
