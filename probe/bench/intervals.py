"""`python -m probe.bench intervals`: the coverage of every interval probe prints, simulated.

Each row is a test split's shape (its per-class test sizes and metric) and a true accuracy.
Every trial draws a test set's outcomes from known per-image probabilities and hands them to
the function a result uses (`score_ci` for linear and k-NN, `paired_diff_ci` for a table's
differences, `mean_score_ci` for a few-shot mean over seeds) at the defaults a run uses
(1,000 resamples, 95%); the coverage is the share of trials whose interval holds the true
score. Beside it, the plain stratified bootstrap (each class drawn from its observed rates,
probe's method before the smoothing) on the same trials.

The model: class c's heads have true accuracies drawn afresh for every trial from a Beta of
mean p and weight `KAPPA` (classes differ, as they do in fine-grained sets), so a row's
coverage is averaged over which classes are hard: no interval can hold its level for every
fixed assignment when a class has one test image, whose variance that image cannot show.
`homogeneous` rows give every class p in every trial. An image's heads are right when a
uniform draw is below their accuracy; two heads share that draw with probability `SHARED`
(an image hard for one is hard for the other), so paired and few-shot outcomes are
correlated as real ones are. The truth is the metric of the true accuracies: the mean over
classes, or over test images for top-1.

Shapes: Caltech-101 is the real per-class test sizes (the image count of each folder of
101_ObjectCategories minus the 30 train images; the counts sum to the protocol's 9,144 =
3,060 + 6,084). FGVC Aircraft's test split holds 33 or 34 images per class (3,333) and Pets'
99 or 100 (3,669 over 37), spread evenly here; Flowers102's 6,149 test images over 102
classes (20 to 238 each) are spread log-evenly between those bounds, not its exact counts.

The metrics read from scores have their own models (`score_models`): ROC AUC on a
Hateful-Memes-sized test set (500 images, the CLIP paper's Table 9 test size, 250 per class
here), the mean of top-1 and top-5 on a Kinetics-700-sized one (33,966 clips, the dataset's
validation split as EVA-CLIP's Table 11 counts it, over 700 classes evenly).
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probe.bench.score_models import MODELS
from probe.evaluations import bootstrap as B

CALTECH_FOLDERS = (
    55, 800, 42, 42, 467, 47, 54, 46, 33, 128, 98, 43, 85, 91, 50, 43, 123, 47, 59, 62, 107,
    47, 69, 73, 70, 50, 51, 57, 67, 52, 65, 68, 75, 64, 53, 64, 85, 435, 435, 67, 67, 45, 34,
    34, 51, 99, 100, 42, 54, 88, 80, 31, 64, 86, 114, 61, 81, 200, 78, 41, 66, 43, 40, 87, 32,
    76, 798, 55, 35, 39, 47, 38, 45, 53, 34, 57, 82, 59, 49, 40, 63, 39, 84, 57, 35, 64, 45, 86,
    59, 64, 35, 85, 49, 86, 75, 239, 37, 59, 34, 56, 39, 60,
)  # fmt: skip  # 101_ObjectCategories, folders in sorted order (BACKGROUND_Google is 467)
VALUES_PAIRED = np.array([0.0, -1.0, 1.0, 0.0])  # a - b for: neither, only b, only a, both
KAPPA = 20.0
SHARED = 0.7


def _even(total: int, classes: int) -> np.ndarray:
    return np.full(classes, total // classes) + (np.arange(classes) < total % classes)


def _log_even(total: int, classes: int, low: int, high: int) -> np.ndarray:
    """`classes` sizes from `low` to `high`, log-spaced on a power of the rank, summing to
    `total` (the power found by bisection)."""
    t = np.linspace(0.0, 1.0, classes)
    lo, hi = 0.01, 100.0
    for _ in range(100):
        gamma = (lo * hi) ** 0.5
        sizes = np.round(low * (high / low) ** (t**gamma)).astype(int)
        lo, hi = (gamma, hi) if sizes.sum() > total else (lo, gamma)
    sizes[classes // 2] += total - sizes.sum()
    return sizes


SHAPES = {
    "caltech101": np.array(CALTECH_FOLDERS) - 30,
    "fgvc_aircraft": _even(3333, 100),
    "pets": _even(3669, 37),
    "flowers102": _log_even(6149, 102, 20, 238),
    "dtd": _even(1880, 47),
    "cifar100": _even(10000, 100),
    "imagenet": _even(50000, 1000),
    "hateful_memes": np.array([250, 250]),  # negatives (label 0), positives (label 1)
    "kinetics700": _even(33966, 700),
}


@dataclass(frozen=True)
class Row:
    interval: str  # score | paired | fewshot
    shape: str
    metric: str
    accuracy: float
    homogeneous: bool = False
    heads: int = 1  # paired: 2; fewshot: the seeds

    @property
    def label(self) -> str:
        kind = {"score": "score_ci (linear, k-NN)", "paired": "paired_diff_ci",
                "fewshot": f"mean_score_ci ({self.heads} seeds)"}[self.interval]  # fmt: skip
        spread = "all classes alike" if self.homogeneous else f"classes ~ Beta, kappa {KAPPA:g}"
        value = f"{self.accuracy:.0%}"
        if self.metric == "roc_auc":
            kind = {"score": "auc_ci (linear)", "paired": "paired_auc_ci"}[self.interval]
            spread, value = "binormal scores", f"AUC {value}"
        if self.metric == "top1_top5_mean":
            kind = {"score": "top1_top5_ci (linear)", "paired": "paired_top1_top5_ci"}[
                self.interval
            ]
            value = f"top-1 {value}"
        return f"{kind} | {self.shape} | {self.metric} | {value} | {spread}"


ROWS = (
    Row("score", "dtd", "top1", 0.70),
    Row("score", "dtd", "top1", 0.99, homogeneous=True),
    Row("score", "cifar100", "top1", 0.90),
    Row("score", "imagenet", "top1", 0.85),
    Row("score", "imagenet", "top1", 0.99, homogeneous=True),
    *(Row("score", "caltech101", "mean_per_class", p) for p in (0.80, 0.90, 0.95, 0.98, 0.99)),
    Row("score", "caltech101", "mean_per_class", 0.98, homogeneous=True),
    Row("score", "fgvc_aircraft", "mean_per_class", 0.70),
    Row("score", "pets", "mean_per_class", 0.93),
    Row("score", "flowers102", "mean_per_class", 0.99),
    Row("paired", "caltech101", "mean_per_class", 0.96, heads=2),
    Row("paired", "dtd", "top1", 0.80, heads=2),
    Row("fewshot", "caltech101", "mean_per_class", 0.80, heads=5),
    Row("fewshot", "dtd", "top1", 0.50, heads=5),
    *(Row("score", "hateful_memes", "roc_auc", auc) for auc in (0.60, 0.75, 0.90)),
    Row("paired", "hateful_memes", "roc_auc", 0.75, heads=2),
    Row("score", "kinetics700", "top1_top5_mean", 0.60),
    Row("paired", "kinetics700", "top1_top5_mean", 0.60, heads=2),
)


def head_accuracies(row: Row, rng: np.random.Generator) -> np.ndarray:
    """(heads, classes) true accuracies: a paired row's second head 2 points below the
    first; few-shot heads scattered around the class's accuracy as seeds' draws are."""
    classes = len(SHAPES[row.shape])
    p = np.full(classes, row.accuracy)
    if not row.homogeneous:
        p = rng.beta(row.accuracy * KAPPA, (1 - row.accuracy) * KAPPA, classes)
    if row.interval == "paired":
        return np.stack([p, np.clip(p - 0.02, 0.0, 1.0)])
    if row.interval == "fewshot":
        return np.clip(p + rng.normal(0.0, 0.03, (row.heads, classes)), 0.0, 1.0)
    return p[None]


def truth(row: Row, acc: np.ndarray, y: np.ndarray) -> float:
    per_head = acc.mean(1) if row.metric == "mean_per_class" else acc[:, y].mean(1)
    if row.interval == "paired":
        return float(per_head[0] - per_head[1]) * 100.0
    return float(per_head.mean()) * 100.0


def outcomes(acc: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(heads, N) right or wrong, heads sharing an image's difficulty with prob. SHARED."""
    shared = rng.random(len(y))
    own = rng.random((len(acc), len(y)))
    draw = np.where(rng.random((len(acc), len(y))) < SHARED, shared, own)
    return draw < acc[:, y]


def interval(row: Row, right: np.ndarray, y: np.ndarray, seed: int) -> list[float]:
    opts = {"metric": row.metric, "seed": seed}
    if row.interval == "paired":
        return B.paired_diff_ci(right[0], right[1], y, **opts)
    if row.interval == "fewshot":
        return B.mean_score_ci(right, y, **opts)
    return B.score_ci(right[0], y, **opts)


def stratified(row: Row, right: np.ndarray, y: np.ndarray, seed: int) -> list[float]:
    """The plain stratified bootstrap: each class drawn from its observed rates."""
    values = np.array([0.0, 1.0])
    if row.interval != "score":
        values = VALUES_PAIRED if row.interval == "paired" else np.arange(row.heads + 1) / row.heads
    category = right[0] * 2 + right[1] if row.interval == "paired" else right.sum(0)
    strata = B.strata(y, row.metric)
    counts = np.stack([np.bincount(category[s], minlength=len(values)) for s in strata])
    n = counts.sum(1)
    rng = np.random.Generator(np.random.PCG64(seed))
    drawn = B.multinomial(rng, n, counts / n[:, None], B.RESAMPLES)
    stats = ((drawn / n[:, None, None]) @ values).mean(0) * 100.0
    return list(np.percentile(stats, [2.5, 97.5]))


class Accuracy:
    """The accuracy rows' model (the functions above), as `score_models` has one per metric."""

    params = staticmethod(head_accuracies)
    truth = staticmethod(truth)
    interval = staticmethod(interval)
    compare = staticmethod(stratified)

    @staticmethod
    def outcomes(acc: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return outcomes(acc, y, rng).astype(np.int64)


def coverage(row: Row, *, trials: int, seed: int, compare: bool = True) -> dict[str, Any]:
    """The row's coverage by probe's interval (and, with `compare`, by the stratified one:
    for roc_auc, the plain percentiles of the same resamples)."""
    rng = np.random.Generator(np.random.PCG64([seed, ROWS.index(row)]))
    sizes = SHAPES[row.shape]
    y = np.repeat(np.arange(len(sizes)), sizes)
    model = MODELS.get(row.metric, Accuracy)
    methods = (("probe", model.interval), ("stratified", model.compare))[: 1 + compare]
    hits = {"probe": 0, "stratified": 0}
    width = true_sum = 0.0
    start = time.perf_counter()
    for t in range(trials):
        acc = model.params(row, rng)
        true = model.truth(row, acc, y)
        true_sum += true
        right = model.outcomes(acc, y, rng)
        for name, method in methods:
            low, high = method(row, right, y, t)
            hits[name] += low <= true <= high
            width += (high - low) / 2 if name == "probe" else 0.0
    return {"row": row.label, "n_test": int(len(y)), "classes": int(len(sizes)),
            "truth": round(true_sum / trials, 3), "coverage": hits["probe"] / trials,
            "stratified": hits["stratified"] / trials if compare else None,
            "half_width": round(width / trials, 3),
            "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m probe.bench intervals",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--trials", type=int, default=1000, help="test sets per row (1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)),
                    help="rows simulated at once (default: this job's CPUs)")  # fmt: skip
    ap.add_argument("--rows", default=None, help="comma-separated row numbers (default: all)")
    ap.add_argument("--json", type=Path, default=None, help="also write the table here")
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    picked = [ROWS[int(i)] for i in args.rows.split(",")] if args.rows else list(ROWS)
    se = (0.95 * 0.05 / args.trials) ** 0.5
    print(f"coverage at the 95% level over {args.trials} simulated test sets per row "
          f"(binomial s.e. {se:.3f}); goal: 0.93 to 0.97")  # fmt: skip
    print(
        "| # | interval | shape | metric | accuracy | per-class accuracies | classes | test "
        "images | coverage | stratified bootstrap | mean half-width | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    out = []
    run = functools.partial(coverage, trials=args.trials, seed=args.seed)
    with mp.get_context("spawn").Pool(max(1, args.jobs)) as pool:
        # imap keeps the order: a row prints once it and the rows before it are done
        for row, r in zip(picked, pool.imap(run, picked), strict=True):
            out.append(r)
            print(f"| {ROWS.index(row)} | {r['row']} | {r['classes']} | {r['n_test']:,} | "
                  f"{r['coverage']:.3f} | {r['stratified']:.3f} | {r['half_width']:.2f} | "
                  f"{r['seconds']} |", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"trials": args.trials, "rows": out}, indent=1))
    return 0
