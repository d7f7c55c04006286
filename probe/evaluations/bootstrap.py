"""Intervals over the test set: one score, a mean over seeds, and paired differences.

Every score here is a mean over strata (all test images for top-1; each class for mean per
class) of a per-image value taken from a few categories: right or wrong (a score), how many
of S seeds' heads were right (a few-shot mean over seeds: j / S), or the pair of outcomes of
two encoders on the same image (their difference: -1, 0 or 1). Resampling images then
matters only through how many of each category a stratum holds, so every resample is drawn
as counts per stratum: its cost grows with the strata and categories, never with N.

Why not the plain stratified bootstrap (each class's counts drawn from its observed
frequencies): a class of n test images then varies as p(1-p)/n with p its *observed* rate,
which is zero for a class that is all right, and Caltech-101's test split has classes of 1
to 5 images that carry about half of the score's variance. That interval covered about 89%
at the 95% level there. So each class is drawn from its frequencies smoothed toward the
pooled ones, as an empirical-Bayes posterior mean:

    rate_c = (count_c + alpha * pooled) / (n_c + alpha),

with alpha (pseudo-images) set by how much the classes really differ: the method of moments
on the spread of the per-class scores beyond what n_c images would give by chance (all
alike: alpha is large and every class gets the pooled rate; very different: alpha is 0 and
this is the stratified bootstrap). The interval is the percentile interval of the resampled
score's deviation from its own centre (the mean of the smoothed rates), placed around the
observed score. With one stratum (top-1) the smoothed rates are the observed ones and this
is the plain percentile bootstrap. `python -m probe.bench intervals` measures the coverage on
the protocol's dataset shapes (docs/results.md).

The mean of top-1 and top-5 accuracy (`top1_top5_mean`) is a mean over all test images of
(top-1 right + top-5 right) / 2, a value from three categories (neither, top-5 only, both),
so it is drawn as the same counts: each image's top-1 and top-5 outcomes are resampled
together. ROC AUC is not a mean of per-image values: `auc_bootstrap` draws its interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.datasets.base import METRICS, SCORE_METRICS
from probe.evaluations.auc_bootstrap import auc_ci, paired_auc_ci

RESAMPLES = 1000
LEVEL = 0.95
RHO_MIN = 1e-6  # the smallest between-class share of variance: alpha = 1 / rho - 1 <= 1e6


def strata(y: np.ndarray, metric: str) -> list[np.ndarray]:
    """Index sets resampled separately: one per class for mean_per_class, else one."""
    if metric not in METRICS:
        raise ProbeError(f"metric={metric!r} unknown; allowed: {', '.join(METRICS)}")
    y = np.asarray(y)
    if metric in ("top1", "top1_top5_mean"):
        return [np.arange(len(y))]
    return [np.flatnonzero(y == c) for c in np.unique(y)]


def _check(correct: np.ndarray, y: np.ndarray, *, resamples: int, level: float) -> np.ndarray:
    """Right-or-wrong outcomes per image (S heads x N images) and the options, checked."""
    correct = np.asarray(correct, dtype=bool)
    if correct.shape[-1:] != np.shape(y) or correct.ndim not in (1, 2) or correct.size == 0:
        raise ValueError(f"outcomes {correct.shape} and labels {np.shape(y)} must be (N,), N>0")
    if resamples < 1:
        raise ProbeError(f"bootstrap.resamples={resamples} must be a positive integer, e.g. 1000")
    if not 0 < level < 1:
        raise ProbeError(f"bootstrap.level={level} must be in (0, 1), e.g. 0.95")
    return correct


def smoothing(counts: np.ndarray, values: np.ndarray) -> float:
    """alpha, the prior's weight in images, by the method of moments over the strata.

    With per-image variance s2 of the pooled categories and rho the share of it that lies
    between strata (a Dirichlet prior of weight alpha has rho = 1 / (alpha + 1)), the spread
    of the per-stratum means is E[sum_c (m_c - m)^2] ~ s2 (C rho + (1 - rho) sum_c 1/n_c).
    """
    n = counts.sum(1)
    pooled = counts.sum(0) / n.sum()
    s2 = pooled @ values**2 - (pooled @ values) ** 2
    chance = float((1.0 / n).sum())
    if len(n) < 2 or s2 <= 0 or len(n) <= chance:
        return 1.0 / RHO_MIN - 1.0  # nothing to tell the strata apart by: pool them
    means = (counts / n[:, None]) @ values
    spread = float(((means - means.mean()) ** 2).sum())
    rho = (spread / s2 - chance) / (len(n) - chance)
    return 1.0 / float(np.clip(rho, RHO_MIN, 1.0)) - 1.0


def multinomial(rng: np.random.Generator, n: np.ndarray, p: np.ndarray, size: int) -> np.ndarray:
    """(C, size, V) counts: row c multinomial(n[c], p[c]), by conditional binomials (drawn
    class by class in memory order, which lets numpy reuse each class's sampler set-up)."""
    out = np.empty((len(n), size, p.shape[1]), dtype=np.int64)
    left = np.repeat(np.asarray(n)[:, None], size, axis=1)
    rest = np.ones(len(n))
    for v in range(p.shape[1] - 1):
        share = np.divide(p[:, v], rest, out=np.zeros(len(n)), where=rest > 0)
        out[:, :, v] = rng.binomial(left, np.clip(share, 0.0, 1.0)[:, None])
        left -= out[:, :, v]
        rest = rest - p[:, v]
    out[:, :, -1] = left
    return out


def _interval(
    category: np.ndarray,
    values: np.ndarray,
    y: np.ndarray,
    *,
    metric: str,
    resamples: int,
    seed: int,
    level: float,
) -> list[float]:
    """Percentile interval (percent) of the mean over strata of `values[category]`."""
    counts = np.stack([np.bincount(category[s], minlength=len(values)) for s in strata(y, metric)])
    n = counts.sum(1)
    alpha = smoothing(counts, values)
    pooled = counts.sum(0) / n.sum()
    rates = (counts + alpha * pooled) / (n + alpha)[:, None]
    rng = np.random.Generator(np.random.PCG64(seed))
    drawn = multinomial(rng, n, rates, resamples)
    deviation = ((drawn / n[:, None, None]) @ values).mean(0) - (rates @ values).mean()
    observed = ((counts / n[:, None]) @ values).mean()
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = observed + np.percentile(deviation, [tail, 100.0 - tail])
    return [float(low) * 100.0, float(high) * 100.0]


def score_ci(
    correct: np.ndarray,
    y: np.ndarray,
    *,
    metric: str,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> list[float]:
    """[low, high] of the score (percent); `correct[i]` says whether image i was right:
    the mean over one head (`mean_score_ci`)."""
    if np.ndim(correct) != 1:
        raise ValueError(f"outcomes {np.shape(correct)} must be (N,)")
    return mean_score_ci(np.asarray(correct)[None], y, metric=metric, resamples=resamples,
                         seed=seed, level=level)  # fmt: skip


def mean_score_ci(
    correct: np.ndarray,
    y: np.ndarray,
    *,
    metric: str,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> list[float]:
    """[low, high] of the mean over S heads of their scores on the same test images:
    `correct` is (S, N). The heads stay fixed: this is the test set's share of the noise
    (a few-shot mean over seeds; its spread over draws is the std beside it)."""
    _outcome_metric(metric)
    a = _check(correct, y, resamples=resamples, level=level)
    a = a.reshape(-1, a.shape[-1])
    right = a.sum(0).astype(np.int64)  # how many of the S heads got image i right
    return _interval(right, np.arange(len(a) + 1) / len(a), y, metric=metric,
                     resamples=resamples, seed=seed, level=level)  # fmt: skip


def paired_diff_ci(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    y: np.ndarray,
    *,
    metric: str,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> list[float]:
    """[low, high] of score(a) - score(b) on the same images, resampled as pairs."""
    _outcome_metric(metric)
    a = _check(correct_a, y, resamples=resamples, level=level).astype(np.int64)
    b = _check(correct_b, y, resamples=resamples, level=level).astype(np.int64)
    # patterns: 0 neither right, 1 only b, 2 only a, 3 both; a - b per pattern
    return _interval(a * 2 + b, np.array([0.0, -1.0, 1.0, 0.0]), y, metric=metric,
                     resamples=resamples, seed=seed, level=level)  # fmt: skip


def _outcome_metric(metric: str) -> None:
    """Right-or-wrong outcomes give the interval of top1 and mean_per_class only."""
    if metric in SCORE_METRICS:
        raise ProbeError(
            f"metric={metric} is read from a head's scores, not from right-or-wrong outcomes: "
            "its interval is top1_top5_ci (ranked classes) or auc_bootstrap.auc_ci (roc_auc)"
        )


TOP15_VALUES = np.array([0.0, 0.5, 1.0])  # (top-1 + top-5) / 2 for: neither, top-5 only, both


def top15_category(top: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per image, how many of top-1 and top-5 it got right: 0, 1 (top-5 only) or 2 (both:
    the predicted class is column 0 of `top`, so a top-1 hit is a top-5 hit)."""
    top, y = np.asarray(top), np.asarray(y)
    return (top[:, 0] == y).astype(np.int64) + (top == y[:, None]).any(1).astype(np.int64)


def top1_top5_ci(
    top: np.ndarray,
    y: np.ndarray,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> list[float]:
    """[low, high] of the mean of top-1 and top-5 accuracy (percent), the test images
    resampled with their top-1 and top-5 outcomes together; `top` (N, 5) ranked classes."""
    cat = top15_category(top, y)
    _check(cat > 0, y, resamples=resamples, level=level)
    return _interval(cat, TOP15_VALUES, y, metric="top1_top5_mean", resamples=resamples,
                     seed=seed, level=level)  # fmt: skip


def paired_top1_top5_ci(
    top_a: np.ndarray,
    top_b: np.ndarray,
    y: np.ndarray,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> list[float]:
    """[low, high] of mean(top1, top5) of a minus that of b on the same images, as pairs."""
    a, b = top15_category(top_a, y), top15_category(top_b, y)
    _check(a > 0, y, resamples=resamples, level=level)
    values = (TOP15_VALUES[:, None] - TOP15_VALUES[None, :]).ravel()  # a - b per pattern
    return _interval(a * 3 + b, values, y, metric="top1_top5_mean", resamples=resamples,
                     seed=seed, level=level)  # fmt: skip


def paired_ci(a: Any, b: Any, y: np.ndarray, *, metric: str, **opts: Any) -> list[float]:
    """[low, high] of score(a) - score(b) from two heads' saved outputs on the same images
    (`metrics.scored_output`: predictions, ranked classes or decision values)."""
    if metric == "roc_auc":
        return paired_auc_ci(a, b, y, **opts)
    if metric == "top1_top5_mean":
        return paired_top1_top5_ci(a, b, y, **opts)
    return paired_diff_ci(np.asarray(a) == y, np.asarray(b) == y, y, metric=metric, **opts)


def top5_correct(top5: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether each image's label is among its (up to) five highest-scoring classes."""
    return (np.asarray(top5) == np.asarray(y)[:, None]).any(1)


def significance(interval: list[float]) -> bool:
    """A difference is significant when its interval excludes zero."""
    return not (interval[0] <= 0.0 <= interval[1])


def interval_fields(
    *,
    pred: np.ndarray,
    y: np.ndarray,
    metric: str,
    top5: Any = None,
    decision: Any = None,
    **opts: Any,
) -> dict[str, list[float]]:
    """`score_ci` (and `top5_ci` where there is a top-5) for a result record. The top-5 score
    is plain top-5 accuracy whatever the dataset's metric, so its interval is too. roc_auc
    reads the decision values `decision`, top1_top5_mean the ranked classes `top5`."""
    if metric == "roc_auc":
        out = {"score_ci": auc_ci(decision, y, **opts)}
    elif metric == "top1_top5_mean":
        out = {"score_ci": top1_top5_ci(top5, y, **opts)}
    else:
        out = {"score_ci": score_ci(np.asarray(pred) == np.asarray(y), y, metric=metric, **opts)}
    if top5 is not None:
        out["top5_ci"] = score_ci(top5_correct(top5, y), y, metric="top1", **opts)
    return out
