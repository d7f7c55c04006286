"""The datasets' test metrics, in percent.

From one predicted class per image (`score`): top-1 and mean per-class accuracy. From a head's
per-class scores (`SCORE_METRICS`, `score_outputs`), the two other single-label metrics of the
CLIP paper's Table 9 (Radford et al. 2021, arXiv:2103.00020v1, appendix A; its "Evaluation
metric" column; docs/protocol.md, section 7):

- `roc_auc` ("ROC AUC", Hateful Memes): a binary dataset's test images ranked by the positive
  class's decision value (label 1; `w_1 x + b_1 - (w_0 x + b_0)`, which ranks them as its
  predicted probability does); the probability that a random positive outranks a random
  negative, a tie counting one half: scikit-learn's `roc_auc_score`, whose trapezoids over
  tied thresholds are exactly that (the Mann-Whitney U with average ranks).
- `top1_top5_mean` ("mean(top1, top5)", Kinetics700): the mean of top-1 and top-5 accuracy,
  both from the same ranking of each image's classes (`heads.test_outputs`: the predicted
  class first, then the best others by score).

The multi-label 11-point mAP is `voc_map`'s. A score metric belongs to the linear probe alone:
`refuse_score_metric` stops k-NN and few-shot in one line before anything is extracted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.datasets.base import METRICS, MULTILABEL_METRICS, SCORE_METRICS

__all__ = ["METRICS", "MULTILABEL_METRICS", "SCORE_METRICS", "auc_rows", "needs_scores",
           "refuse_score_metric", "roc_auc", "score", "score_outputs",
           "scored_output", "top1_top5_mean"]  # fmt: skip
SCORE_EVALS = ("linear",)  # the evaluations a score metric has


def needs_scores(metric: str) -> bool:
    """Whether `metric` is read from a head's per-class scores (not its predicted class)."""
    return metric in SCORE_METRICS


def refuse_score_metric(*, metric: str, eval_name: str, dataset: str) -> None:
    """k-NN and few-shot give one predicted class per image (and few-shot no saved scores):
    a score metric is the linear probe's."""
    if needs_scores(metric) and eval_name not in SCORE_EVALS:
        raise ProbeError(
            f"dataset {dataset} is scored by {metric}, read from a head's per-class scores: "
            f"eval={eval_name} gives one predicted class per image (top1, mean_per_class); "
            f"use eval=linear, or dataset.metric=top1 for a {eval_name} run"
        )


def score(pred: np.ndarray, y: np.ndarray, metric: str) -> float:
    """Percent, 0 to 100. mean_per_class averages over the classes present in `y`.

    One predicted class per image against one label per image: multi-label labels (N x K)
    or a multi-label metric are refused, never scored as if they were single-label."""
    if np.ndim(y) != 1 or metric in MULTILABEL_METRICS:
        raise ProbeError(
            f"metric={metric} with labels of shape {np.shape(y)}: this scores one predicted "
            "class per image (top1, mean_per_class); a multi-label dataset is scored from its "
            "per-class scores by map11 (eval=linear, one-vs-rest: probe.evaluations.multilabel)"
        )
    if metric == "top1":
        return float((pred == y).mean() * 100.0)
    if metric == "mean_per_class":
        classes = np.unique(y)
        return float(np.mean([(pred[y == c] == c).mean() for c in classes]) * 100.0)
    if needs_scores(metric):
        raise ProbeError(
            f"metric={metric} is read from a head's per-class scores, not one predicted class "
            "per image: score it with probe.evaluations.metrics.score_outputs (eval=linear)"
        )
    raise ProbeError(f"metric={metric!r} unknown; allowed: {', '.join(METRICS)}")


def scored_output(metric: str) -> str:
    """The head's output on a split that `metric` reads (a paired difference resamples it)."""
    return {"roc_auc": "test_score", "top1_top5_mean": "test_top5"}.get(metric, "test_pred")


def score_outputs(outputs: dict[str, np.ndarray], metric: str) -> float:
    """Percent: `metric` of a head's outputs on a split (`heads.test_outputs`: `test_label`,
    `test_pred`, `test_top5` and, for roc_auc, `test_score`)."""
    y = outputs["test_label"]
    if metric == "roc_auc":
        return roc_auc(outputs["test_score"], y)
    if metric == "top1_top5_mean":
        return top1_top5_mean(outputs["test_top5"], y)
    return score(outputs["test_pred"], y, metric)


def top1_top5_mean(top: np.ndarray, y: np.ndarray) -> float:
    """Percent: the mean of top-1 accuracy (column 0 of `top`, the predicted class) and top-5
    accuracy (the label among the row's classes); `top` (N, 5) from `heads.test_outputs`."""
    top, y = np.asarray(top), np.asarray(y)
    if top.ndim != 2 or top.shape[0] != len(y) or not len(y):
        raise ProbeError(f"top1_top5_mean needs (N, 5) ranked classes for N labels; got "
                         f"{top.shape} for {np.shape(y)}")  # fmt: skip
    top1 = (top[:, 0] == y).mean()
    top5 = (top == y[:, None]).any(axis=1).mean()
    return float((top1 + top5) / 2.0 * 100.0)


def roc_auc(scores: np.ndarray, y: np.ndarray) -> float:
    """Percent: the area under the ROC curve of decision values `scores` for labels `y`
    (0 negative, 1 positive), ties counting one half (scikit-learn's `roc_auc_score`)."""
    return float(auc_rows(scores, y)[0] * 100.0)


def auc_rows(scores: np.ndarray, y: np.ndarray, counts: Any = None) -> np.ndarray:
    """(R,) AUC (0..1) of the images each drawn `counts[r, i]` times in resample r (`counts`
    (R, N); None: each image once, R = 1). One pass over the ranking: the images are sorted
    by score, tied scores grouped; a positive beats every negative of a lower group and half
    of its own group's (the weights are how many times each image is drawn)."""
    s, y = _check_auc(scores, y)
    order = np.argsort(s, kind="stable")
    ranked = s[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # tie groups, ascending
    w = np.ones((1, len(s))) if counts is None else np.asarray(counts, np.float64)[:, order]
    positive = y[order] == 1
    if len(starts) == len(s):  # no ties: each positive beats the negatives ranked below it
        below = np.cumsum(np.where(positive, 0.0, w), axis=1)[:, positive]
        num = (w[:, positive] * below).sum(axis=1)
        return num / (w[:, positive].sum(axis=1) * w[:, ~positive].sum(axis=1))
    pos = np.add.reduceat(w * positive, starts, axis=1)
    neg = np.add.reduceat(w * ~positive, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def _check_auc(scores: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(y)
    if s.ndim != 1 or s.shape != y.shape:
        raise ProbeError(f"roc_auc needs one decision value per label; got scores {s.shape} "
                         f"for labels {y.shape}")  # fmt: skip
    found = sorted(set(np.unique(y).tolist()))
    if found != [0, 1]:
        raise ProbeError(
            f"roc_auc needs both classes, 0 (negative) and 1 (positive), among the labels "
            f"scored; found {found}: the split needs images of both classes"
        )
    if np.isnan(s).any():
        raise ProbeError(f"roc_auc: {int(np.isnan(s).sum())} decision values are NaN (a "
                         "diverged fit); rerun it, e.g. with probe.dtype=float64")  # fmt: skip
    return s, y
