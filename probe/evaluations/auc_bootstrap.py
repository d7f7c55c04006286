"""The interval of a ROC AUC, and of the difference of two on the same test images.

ROC AUC is not a mean of per-image outcomes (it compares every positive with every negative),
so the counts engine of `bootstrap` does not apply. Its interval is a bootstrap over test
images, stratified by class: each resample draws n_1 positives from the n_1 positive test
images and n_0 negatives from the n_0 negative ones, with replacement (numpy's PCG64 seeded
with `bootstrap.seed`, `integers(0, n_c, (r, n_c))` for the negatives, then the positives, of
each block of `CHUNK` resamples), so every resample has both classes and the observed class
balance, and the AUC is recomputed on it (`metrics.auc_rows`: an image drawn m times weighs
m). The interval is the percentile interval of the resampled AUCs' deviation from their
mean, placed around the observed AUC, as `bootstrap._interval` and `voc_map.map_ci` place
theirs. A paired difference draws one resample of images for both heads (their decision
values on the same images) and takes the percentiles of AUC_a - AUC_b the same way.
`python -m probe.bench intervals` measures the coverage on a Hateful-Memes-sized test set
(docs/results.md, Intervals).
"""

from __future__ import annotations

import numpy as np

from probe.core.errors import ProbeError
from probe.evaluations.metrics import auc_rows

CHUNK = 64  # resamples evaluated together (CHUNK x N float64 weights)


def _options(resamples: int, level: float) -> None:
    if resamples < 1:
        raise ProbeError(f"bootstrap.resamples={resamples} must be a positive integer, e.g. 1000")
    if not 0 < level < 1:
        raise ProbeError(f"bootstrap.level={level} must be in (0, 1), e.g. 0.95")


def resampled_counts(y: np.ndarray, *, resamples: int, seed: int):
    """Blocks of (r, N) counts, r <= CHUNK, `resamples` rows in all: how many times each image
    is drawn, each class's images drawn as many times as the class has images."""
    y = np.asarray(y)
    classes = [np.flatnonzero(y == c) for c in (0, 1)]
    rng = np.random.Generator(np.random.PCG64(seed))
    for start in range(0, resamples, CHUNK):
        r = min(CHUNK, resamples - start)
        counts = np.zeros((r, len(y)), dtype=np.int64)
        for rows in classes:  # each resample: len(rows) draws of the class's images
            n = len(rows)
            drawn = (np.arange(r)[:, None] * n + rng.integers(0, n, (r, n))).ravel()
            counts[:, rows] = np.bincount(drawn, minlength=r * n).reshape(r, n)
        yield counts


def _placed(observed: float, drawn: np.ndarray, level: float) -> list[float]:
    """Percent: the percentiles of the draws' deviation from their mean, around `observed`."""
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = observed + np.percentile(drawn - drawn.mean(), [tail, 100.0 - tail])
    return [float(low) * 100.0, float(high) * 100.0]


def resampled_aucs(scores: np.ndarray, y: np.ndarray, *, resamples: int, seed: int) -> np.ndarray:
    """(resamples,) AUC (0..1) of the class-stratified resamples of the test images."""
    auc_rows(scores, y)  # checked before anything is drawn
    blocks = resampled_counts(y, resamples=resamples, seed=seed)
    return np.concatenate([auc_rows(scores, y, counts) for counts in blocks])


def auc_ci(
    scores: np.ndarray, y: np.ndarray, *, resamples: int, level: float, seed: int
) -> list[float]:
    """[low, high] percent of the ROC AUC of decision values `scores` for binary labels `y`."""
    _options(resamples, level)
    drawn = resampled_aucs(scores, y, resamples=resamples, seed=seed)
    return _placed(float(auc_rows(scores, y)[0]), drawn, level)


def paired_auc_ci(
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    y: np.ndarray,
    *,
    resamples: int,
    level: float,
    seed: int,
) -> list[float]:
    """[low, high] percent of AUC(a) - AUC(b), the two heads' decision values on the same
    images resampled together."""
    _options(resamples, level)
    observed = float(auc_rows(scores_a, y)[0] - auc_rows(scores_b, y)[0])
    blocks = resampled_counts(y, resamples=resamples, seed=seed)
    drawn = np.concatenate([auc_rows(scores_a, y, c) - auc_rows(scores_b, y, c) for c in blocks])
    return _placed(observed, drawn, level)
