"""The simulated test sets of `python -m probe.bench intervals` for the metrics read from scores.

Each model has the five steps of a trial that `intervals.coverage` runs for accuracy rows:
the heads' true parameters, the true score, one test set's outcomes, probe's interval (the
very function a result uses, at a run's defaults) and the comparison interval.

- **roc_auc** (`AUC`): binormal decision values of equal variance, negatives N(0, 1) and
  positives N(d, 1), so the true AUC is Phi(d / sqrt 2) and d = sqrt 2 Phi^-1(AUC). Two heads
  (a paired row) have correlation `SHARED` on the same image, the second head's AUC 2 points
  below the first. Probe's interval: `auc_bootstrap.auc_ci` (`paired_auc_ci`); the comparison:
  the plain 2.5-97.5 percentiles of the same class-stratified resamples, not placed around
  the observed AUC.
- **top1_top5_mean** (`TOP15`): per class a top-1 accuracy a1 drawn as the accuracy rows draw
  it, and a top-5 accuracy a5 = a1 + (1 - a1) * `FIVE` (a share of top-1's misses rank the
  label among the next four); an image's uniform draw u gives top-1 right when u < a1 and
  top-5 right when u < a5 (a top-1 hit is a top-5 hit), heads sharing u with probability
  `SHARED`. Probe's interval: `bootstrap.top1_top5_ci` (`paired_top1_top5_ci`) on ranked
  classes built from those outcomes; the comparison: the plain percentile bootstrap of the
  images' categories (on one stratum the two are the same draw).
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np

from probe.evaluations import bootstrap as B
from probe.evaluations.auc_bootstrap import auc_ci, paired_auc_ci, resampled_aucs, resampled_counts
from probe.evaluations.metrics import auc_rows

SHARED = 0.7  # as the accuracy rows: how alike two heads are on one image
FIVE = 0.6  # share of top-1 misses whose label is among the next four classes
GAP = 0.02  # a paired row's second head: 2 points below the first
NORMAL = NormalDist()
TAILS = [2.5, 97.5]  # the comparison's plain percentiles, at the runs' 95% level


class AUC:
    @staticmethod
    def params(row: Any, rng: np.random.Generator) -> np.ndarray:
        """(heads,) separations d of the binormal scores."""
        aucs = [row.accuracy, row.accuracy - GAP][: 2 if row.interval == "paired" else 1]
        return np.array([2**0.5 * NORMAL.inv_cdf(a) for a in aucs])

    @staticmethod
    def truth(row: Any, d: np.ndarray, y: np.ndarray) -> float:
        auc = np.array([NORMAL.cdf(x / 2**0.5) for x in d]) * 100.0
        return float(auc[0] - auc[1]) if row.interval == "paired" else float(auc[0])

    @staticmethod
    def outcomes(d: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(heads, N) decision values, correlated SHARED between heads on one image."""
        shared = rng.standard_normal(len(y))
        own = rng.standard_normal((len(d), len(y)))
        noise = SHARED**0.5 * shared + (1 - SHARED) ** 0.5 * own
        return d[:, None] * y[None, :] + noise

    @staticmethod
    def interval(row: Any, s: np.ndarray, y: np.ndarray, seed: int) -> list[float]:
        opts = {"resamples": B.RESAMPLES, "level": B.LEVEL, "seed": seed}
        if row.interval == "paired":
            return paired_auc_ci(s[0], s[1], y, **opts)
        return auc_ci(s[0], y, **opts)

    @staticmethod
    def compare(row: Any, s: np.ndarray, y: np.ndarray, seed: int) -> list[float]:
        """The plain percentiles of the same resamples (not placed around the observed)."""
        if row.interval == "paired":
            drawn = np.concatenate([auc_rows(s[0], y, c) - auc_rows(s[1], y, c)
                                    for c in resampled_counts(y, resamples=B.RESAMPLES,
                                                              seed=seed)])  # fmt: skip
        else:
            drawn = resampled_aucs(s[0], y, resamples=B.RESAMPLES, seed=seed)
        return list(np.percentile(drawn * 100.0, TAILS))


class TOP15:
    @staticmethod
    def params(row: Any, rng: np.random.Generator) -> np.ndarray:
        """(heads, classes, 2) true top-1 and top-5 accuracies."""
        from probe.bench.intervals import head_accuracies  # the accuracy rows' classes

        top1 = head_accuracies(row, rng)
        return np.stack([top1, top1 + (1.0 - top1) * FIVE], axis=-1)

    @staticmethod
    def truth(row: Any, acc: np.ndarray, y: np.ndarray) -> float:
        per_head = acc[:, y, :].mean(axis=(1, 2)) * 100.0
        return float(per_head[0] - per_head[1]) if row.interval == "paired" else float(per_head[0])

    @staticmethod
    def outcomes(acc: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(heads, N) categories: 0 neither right, 1 top-5 only, 2 both."""
        shared = rng.random(len(y))
        own = rng.random((len(acc), len(y)))
        u = np.where(rng.random((len(acc), len(y))) < SHARED, shared, own)
        return (u < acc[:, y, 0]).astype(np.int64) + (u < acc[:, y, 1])

    @staticmethod
    def ranked(category: np.ndarray, y: np.ndarray, classes: int) -> np.ndarray:
        """(N, 2) ranked classes with those outcomes: the label first (both right), second
        (top-5 only) or absent (neither)."""
        other = (y + 1) % classes
        first = np.where(category == 2, y, other)
        second = np.where(category == 1, y, (y + 2) % classes)
        return np.stack([first, second], axis=1)

    @classmethod
    def interval(cls, row: Any, cat: np.ndarray, y: np.ndarray, seed: int) -> list[float]:
        k = int(y.max()) + 1
        if row.interval == "paired":
            return B.paired_top1_top5_ci(cls.ranked(cat[0], y, k), cls.ranked(cat[1], y, k), y,
                                         seed=seed)  # fmt: skip
        return B.top1_top5_ci(cls.ranked(cat[0], y, k), y, seed=seed)

    @staticmethod
    def compare(row: Any, cat: np.ndarray, y: np.ndarray, seed: int) -> list[float]:
        """The plain percentile bootstrap of the images' categories (one stratum)."""
        values = B.TOP15_VALUES
        if row.interval == "paired":
            cat, values = cat[0] * 3 + cat[1], (values[:, None] - values[None, :]).ravel()
        else:
            cat = cat[0]
        counts = np.bincount(cat, minlength=len(values))[None]
        rng = np.random.Generator(np.random.PCG64(seed))
        drawn = B.multinomial(rng, counts.sum(1), counts / counts.sum(), B.RESAMPLES)
        return list(np.percentile((drawn[0] / counts.sum()) @ values * 100.0, TAILS))


MODELS = {"roc_auc": AUC, "top1_top5_mean": TOP15}
