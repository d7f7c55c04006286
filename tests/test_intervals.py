"""Intervals cover what they say: the smoothed per-class draw on Caltech-101's real class
sizes, the few-shot mean over seeds, and the coverage bench on a tiny run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from probe.bench.intervals import ROWS, SHAPES, Row, coverage
from probe.evaluations.bootstrap import mean_score_ci, paired_diff_ci, score_ci, smoothing

CALTECH = np.repeat(np.arange(len(SHAPES["caltech101"])), SHAPES["caltech101"])


def test_caltech_shape_sizes_are_the_protocol_split() -> None:
    sizes = SHAPES["caltech101"]
    assert len(sizes) == 102 and sizes.sum() == 6084 and (sizes + 30).sum() == 9144
    assert sorted(sizes)[:10] == [1, 2, 3, 4, 4, 4, 4, 5, 5, 5]


def test_caltech_mean_per_class_interval_is_as_wide_as_the_sampling_spread() -> None:
    """At 98% in every class the score's standard deviation is known exactly; the interval's
    half-width must match 1.96 of it. The stratified bootstrap (main before the smoothing)
    gave the all-right small classes no variance: about 0.85 of it."""
    p, sizes = 0.98, SHAPES["caltech101"]
    sd = np.sqrt((p * (1 - p) / sizes).sum()) / len(sizes) * 100
    rng = np.random.default_rng(5)
    halves = []
    for rep in range(30):
        low, high = score_ci(rng.random(len(CALTECH)) < p, CALTECH, metric="mean_per_class",
                             seed=rep)  # fmt: skip
        halves.append((high - low) / 2)
    assert 0.93 <= np.mean(halves) / (1.96 * sd) <= 1.1, np.mean(halves) / (1.96 * sd)


def test_caltech_mean_per_class_interval_covers_at_the_nominal_rate() -> None:
    """The issue's case (Caltech-101's class sizes at 98%), seeded: 300 test sets."""
    row = Row("score", "caltech101", "mean_per_class", 0.98, homogeneous=True)
    got = coverage(row, trials=300, seed=1, compare=False)["coverage"]
    assert 0.93 <= got <= 0.97, got


def test_smoothing_pools_alike_classes_and_keeps_different_ones_apart() -> None:
    values = np.array([0.0, 1.0])
    rng = np.random.default_rng(0)
    n = np.full(50, 40)
    alike = rng.binomial(n, 0.9)
    apart = rng.binomial(n, np.where(np.arange(50) % 2, 0.99, 0.5))
    assert smoothing(np.stack([n - alike, alike], 1), values) > 100
    assert smoothing(np.stack([n - apart, apart], 1), values) < 5
    one = np.array([[3, 7]])  # one stratum: nothing to compare, its own rates are pooled
    assert smoothing(one, values) > 1e5


def test_top1_interval_is_the_percentile_bootstrap_of_the_score() -> None:
    """With one stratum there is nothing to smooth: the interval brackets the score, is
    seeded, and an all-right test set has no spread to show."""
    rng = np.random.default_rng(0)
    correct, y = rng.random(2000) < 0.9, rng.integers(0, 10, 2000)
    low, high = score_ci(correct, y, metric="top1", seed=3)
    assert low < correct.mean() * 100 < high and 1.0 < high - low < 3.5
    assert score_ci(np.ones(50, bool), np.zeros(50, int), metric="top1") == [100.0, 100.0]


def test_mean_over_seeds_interval() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 800)
    one = rng.random(800) < 0.7
    assert mean_score_ci(np.stack([one] * 3), y, metric="top1", seed=2) == pytest.approx(
        score_ci(one, y, metric="top1", seed=2)
    )  # three identical heads: the same images right, the same interval
    heads = rng.random((5, 800)) < 0.7
    low, high = mean_score_ci(heads, y, metric="mean_per_class")
    mean = np.mean([[heads[s][y == c].mean() for c in range(4)] for s in range(5)]) * 100
    assert low < mean < high
    with pytest.raises(ValueError, match="must be"):
        mean_score_ci(heads[:, :10], y, metric="top1")


def test_paired_interval_of_small_classes_is_not_zero() -> None:
    """Two encoders that differ on one image of a one-image class: the stratified bootstrap
    drew that class as a constant; the smoothed draw lets every class vary."""
    y = np.repeat(np.arange(6), [1, 1, 2, 40, 40, 40])
    a = np.ones(len(y), bool)
    b = a.copy()
    b[0] = False
    b[5::7] = False
    low, high = paired_diff_ci(a, b, y, metric="mean_per_class")
    assert low < high


def test_bench_intervals_prints_a_row_per_shape(tmp_path, capsys) -> None:
    from probe.bench.__main__ import main

    assert main(["intervals", "--trials", "20", "--rows", "0,12", "--jobs", "1",
                 "--json", str(tmp_path / "c.json")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "goal: 0.93 to 0.97" in out and "| 12 | score_ci (linear, k-NN) | pets" in out
    rows = json.loads((tmp_path / "c.json").read_text())["rows"]
    assert [r["classes"] for r in rows] == [47, 37] and all(0 <= r["coverage"] <= 1 for r in rows)
    assert {r.interval for r in ROWS} == {"score", "paired", "fewshot"}


def test_bench_rows_of_the_score_metrics_run() -> None:
    """A smoke of the ROC AUC and mean(top1, top5) rows (the bench's 1,000 trials are run by
    hand: docs/results.md), in-process."""
    from probe.bench.intervals import coverage

    picked = [r for r in ROWS if r.metric in ("roc_auc", "top1_top5_mean")]
    assert {(r.metric, r.interval) for r in picked} == {
        (m, i) for m in ("roc_auc", "top1_top5_mean") for i in ("score", "paired")
    }
    for row in (r for r in picked if r.interval == "paired" or r.accuracy == 0.75):
        got = coverage(row, trials=2, seed=0)
        assert 0 <= got["coverage"] <= 1 and got["half_width"] > 0
        assert got["n_test"] == (500 if row.metric == "roc_auc" else 33966)
