"""Bootstrap confidence intervals over the test set: one score, and paired differences.

A test score is a mean of per-image 0/1 outcomes (top-1: over all images; mean per class:
per class, then over classes). Resampling N images with replacement therefore matters only
through how many of each outcome the resample holds, and those counts are exactly a
multinomial draw with the observed frequencies. So each of the (seeded) resamples is drawn as
counts, per class where the metric is per class (the stratified resample: every class keeps
its size), which is the same distribution as resampling indices at a cost independent of N.
For two encoders on the same test images the outcome of an image is the pair (a, b), four
categories, and the paired resample keeps images paired. Intervals are percentile intervals,
in percent like the scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.datasets.base import METRICS

RESAMPLES = 1000
LEVEL = 0.95


def _strata(y: np.ndarray, metric: str) -> list[np.ndarray]:
    """Index sets resampled separately: one per class for mean_per_class, else one."""
    if metric not in METRICS:
        raise ProbeError(f"metric={metric!r} unknown; allowed: {', '.join(METRICS)}")
    y = np.asarray(y)
    if metric == "top1":
        return [np.arange(len(y))]
    return [np.flatnonzero(y == c) for c in np.unique(y)]


def _pattern_counts(
    outcome: np.ndarray, strata: list[np.ndarray], *, resamples: int, seed: int
) -> np.ndarray:
    """(resamples, strata, 4) multinomial counts of the outcome patterns 0..3 per stratum."""
    rng = np.random.Generator(np.random.PCG64(seed))
    out = np.empty((resamples, len(strata), 4), dtype=np.int64)
    for j, idx in enumerate(strata):
        freq = np.bincount(outcome[idx], minlength=4) / len(idx)
        out[:, j] = rng.multinomial(len(idx), freq, size=resamples)
    return out


def _check(correct: np.ndarray, y: np.ndarray, *, resamples: int, level: float) -> np.ndarray:
    correct = np.asarray(correct, dtype=bool)
    if correct.shape != np.shape(y) or correct.ndim != 1 or len(correct) == 0:
        raise ValueError(f"outcomes {correct.shape} and labels {np.shape(y)} must be (N,), N>0")
    if resamples < 1:
        raise ProbeError(f"eval.resamples={resamples} must be a positive integer, e.g. 1000")
    if not 0 < level < 1:
        raise ProbeError(f"eval.level={level} must be in (0, 1), e.g. 0.95")
    return correct


def _percentile(stats: np.ndarray, level: float) -> list[float]:
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(stats, [tail, 100.0 - tail])
    return [float(low), float(high)]


def _score_from(counts: np.ndarray, sizes: np.ndarray, hits: tuple[int, ...]) -> np.ndarray:
    """Per resample: the mean over strata of the share of images in the `hits` patterns."""
    share = counts[:, :, list(hits)].sum(2) / sizes
    return share.mean(1) * 100.0


def _interval(
    pattern: np.ndarray,
    y: np.ndarray,
    *,
    metric: str,
    diff: bool,
    resamples: int,
    seed: int,
    level: float,
) -> list[float]:
    """Percentile interval of the score of outcome a (patterns 2, 3), or of a - b."""
    strata = _strata(y, metric)
    counts = _pattern_counts(pattern, strata, resamples=resamples, seed=seed)
    sizes = np.array([len(s) for s in strata], dtype=np.float64)
    stats = _score_from(counts, sizes, (2, 3))
    if diff:
        stats = stats - _score_from(counts, sizes, (1, 3))
    return _percentile(stats, level)


def score_ci(
    correct: np.ndarray,
    y: np.ndarray,
    *,
    metric: str,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> list[float]:
    """[low, high] of the score (percent); `correct[i]` says whether image i was right."""
    a = _check(correct, y, resamples=resamples, level=level).astype(np.int64)
    return _interval(a * 3, y, metric=metric, diff=False, resamples=resamples, seed=seed,
                     level=level)  # fmt: skip


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
    a = _check(correct_a, y, resamples=resamples, level=level).astype(np.int64)
    b = _check(correct_b, y, resamples=resamples, level=level).astype(np.int64)
    # patterns: 0 neither right, 1 only b, 2 only a, 3 both
    return _interval(a * 2 + b, y, metric=metric, diff=True, resamples=resamples, seed=seed,
                     level=level)  # fmt: skip


def top5_correct(top5: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether each image's label is among its (up to) five highest-scoring classes."""
    return (np.asarray(top5) == np.asarray(y)[:, None]).any(1)


def significance(interval: list[float]) -> bool:
    """A difference is significant when its interval excludes zero."""
    return not (interval[0] <= 0.0 <= interval[1])


def interval_fields(
    *, pred: np.ndarray, y: np.ndarray, metric: str, top5: Any = None, **opts: Any
) -> dict[str, list[float]]:
    """`score_ci` (and `top5_ci` where there is a top-5) for a result record. The top-5 score
    is plain top-5 accuracy whatever the dataset's metric, so its interval is too."""
    out = {"score_ci": score_ci(np.asarray(pred) == np.asarray(y), y, metric=metric, **opts)}
    if top5 is not None:
        out["top5_ci"] = score_ci(top5_correct(top5, y), y, metric="top1", **opts)
    return out
