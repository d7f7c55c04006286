"""The PASCAL VOC 2007 devkit's 11-point interpolated mean average precision, and its interval.

The devkit's `VOCevalcls.m` (npinto/VOCdevkit, a git copy of the devkit, commit b0890ec6,
VOCcode/VOCevalcls.m lines 36-54; Everingham et al. 2010, IJCV 88, section 4.2), per class:
rank the test images by score (`sort(-out)`: descending, ties in file order, MATLAB's sort
being stable), count true positives (flag 1) and false positives (flag -1) down the ranking,
recall = tp / #positives and precision = tp / (tp + fp) at each rank; AP is the mean over
t = 0, 0.1, ..., 1 of the largest precision at recall >= t (0 where none reaches t). An image
flagged 0 ("difficult") counts as neither: it keeps its place and moves no count, so it is
as if it were not ranked. A precision of 0/0 (no image counted yet) is NaN, which MATLAB's
`max` skips. A class with no positive has no recall (0/0) and AP 0. mAP is the mean over
classes, reported in percent like every score.

The thresholds are k/10 exactly (`np.arange(11) / 10`, each correctly rounded), so a recall of
exactly 3/10 reaches t = 0.3 as the definition says; `0.1 * 3` (0.30000000000000004) would not.

dinov3's `MeanAveragePrecisionVOC2007` (dinov3/eval/metrics/classification.py lines 160-175)
is the same 11-point definition on torchmetrics' precision-recall curve, which ends with the
point (recall 0, precision 1), groups tied scores and, with dinov3's VOC targets
(dinov3/data/transforms.py lines 147-151), counts difficult images as positives: its t = 0
term is always 1. We follow the devkit.

The interval is a percentile bootstrap over test images: each resample draws N rows with
replacement (numpy's PCG64 seeded with `bootstrap.seed`) and recomputes the mAP; the
percentiles of the resampled mAPs' deviation from their mean are placed around the observed
mAP (`map_ci`; its measured coverage: docs/results.md, Intervals). A resample is
evaluated as counts per image on the one ranking of the observed scores: a drawn image's
copies tie and sit together, and the points inside such a run never beat its last one (a run
of positives) or the point before it (a run of negatives), so the 11-point AP is the one the
resampled rows give (tests/test_multilabel.py checks it against recomputing on the rows).
"""

from __future__ import annotations

import numpy as np

from probe.core.errors import ProbeError

THRESHOLDS = np.arange(11) / 10.0
CHUNK = 64  # resamples evaluated together (CHUNK x N float64 arrays per class)


def class_ap(scores: np.ndarray, flags: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
    """11-point AP (0..1) of one class: `scores` and `flags` (N,); `counts` (R, N) how many
    times each image is drawn in each of R resamples (None: each image once). Returns (R,)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    g = np.asarray(flags)[order]
    w = np.ones((1, len(g))) if counts is None else np.asarray(counts, np.float64)[:, order]
    tp = np.cumsum(w * (g > 0), axis=1)
    fp = np.cumsum(w * (g < 0), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp / tp[:, -1:]  # NaN everywhere for a class without positives: AP 0
        precision = tp / (tp + fp)  # NaN before the first counted image: never the max
    precision = np.where(np.isnan(precision), -np.inf, precision)
    best_after = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(len(w))
    ap = np.zeros(len(w))
    for t in THRESHOLDS:  # recall only grows down the ranking: rec >= t is a suffix
        reach = recall >= t
        first = reach.argmax(axis=1)
        ap += np.where(reach.any(axis=1), np.maximum(best_after[rows, first], 0.0), 0.0)
    return ap / len(THRESHOLDS)


def check_pair(scores: np.ndarray, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, flags = np.asarray(scores), np.asarray(flags)
    if scores.ndim != 2 or scores.shape != flags.shape or not len(scores):
        raise ProbeError(
            f"map11 needs per-class scores and flags of one shape (N x K, N > 0); got scores "
            f"{scores.shape} and labels {flags.shape}"
        )
    return scores, flags


def class_aps(scores: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """(K,) 11-point AP of each class (0..1)."""
    scores, flags = check_pair(scores, flags)
    return np.array([class_ap(scores[:, c], flags[:, c])[0] for c in range(scores.shape[1])])


def mean_ap(scores: np.ndarray, flags: np.ndarray) -> float:
    """The devkit's mAP in percent: the mean over classes of their 11-point AP."""
    return float(class_aps(scores, flags).mean() * 100.0)


def resampled_maps(
    scores: np.ndarray, flags: np.ndarray, *, resamples: int, seed: int
) -> np.ndarray:
    """(resamples,) mAP in percent of test sets drawn with replacement from the rows; draw r
    is the rows `rng.integers(0, N, N)` of the r-th call, `rng` PCG64 seeded with `seed`."""
    scores, flags = check_pair(scores, flags)
    n, k = scores.shape
    rng = np.random.Generator(np.random.PCG64(seed))
    out = np.empty(resamples)
    for s in range(0, resamples, CHUNK):
        r = min(CHUNK, resamples - s)
        rows = np.stack([rng.integers(0, n, n) for _ in range(r)])
        counts = np.bincount((np.arange(r)[:, None] * n + rows).ravel(), minlength=r * n)
        counts = counts.reshape(r, n)
        total = sum(class_ap(scores[:, c], flags[:, c], counts) for c in range(k))
        out[s : s + r] = total / k * 100.0
    return out


def map_ci(
    scores: np.ndarray, flags: np.ndarray, *, resamples: int, level: float, seed: int
) -> list[float]:
    """[low, high] percent at `level`: the percentile interval of the resampled mAPs'
    deviation from their mean, placed around the observed mAP (as `bootstrap._interval`
    places every interval). The resampled mAPs sit above the observed one (duplicated rows
    tie, and the 11-point maxima favour them: +0.3 to +0.6 points in docs/results.md's
    simulation), so their plain percentiles could exclude the observed score."""
    if resamples < 1:
        raise ProbeError(f"bootstrap.resamples={resamples} must be a positive integer, e.g. 1000")
    if not 0 < level < 1:
        raise ProbeError(f"bootstrap.level={level} must be in (0, 1), e.g. 0.95")
    maps = resampled_maps(scores, flags, resamples=resamples, seed=seed)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = mean_ap(scores, flags) + np.percentile(maps - maps.mean(), [tail, 100.0 - tail])
    return [float(low), float(high)]
