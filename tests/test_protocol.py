"""The CLIP search: grid, visiting order, tie-breaking, metrics, stratified carving."""

from __future__ import annotations

import numpy as np
import pytest

from probe.core.errors import ProbeError
from probe.datasets.splits import stratified_holdout
from probe.evaluations.linear import GRID, score, search
from probe.solvers.base import Fit, Solver


def test_grid_is_97_points_8_per_decade() -> None:
    assert len(GRID) == 97
    assert GRID[0] == pytest.approx(1e-6) and GRID[-1] == pytest.approx(1e6)
    assert GRID[8] == pytest.approx(1e-5)


class ScriptedSolver(Solver):
    """A solver whose val accuracy is a given function of C: tests the search alone."""

    name = "scripted"

    def __init__(self, curve) -> None:
        self.curve = curve
        self.fitted: list[float] = []

    def fit(self, X, y, *, C, num_classes, init=None) -> Fit:
        self.fitted.append(C)
        return Fit(coef=np.array([[C]]), intercept=np.zeros(1), iterations=1, converged=True)

    def predict(self, fit, X):
        acc = self.curve(float(fit.coef[0, 0]))
        n = len(X)
        return (np.arange(n) < round(acc * n)).astype(np.int64)  # labels all 1: acc correct


def run_search(curve):
    solver = ScriptedSolver(curve)
    X = np.zeros((1000, 1))
    y = np.ones(1000, dtype=np.int64)
    return search(solver=solver, train=(X, y), val=(X, y), num_classes=2, metric="top1"), solver


def test_search_visits_protocol_order_and_finds_peak() -> None:
    peak = np.log10(GRID[61])  # C = 10^1.625
    res, solver = run_search(lambda C: 0.9 - 0.05 * abs(np.log10(C) - peak))
    tried = [r["C"] for r in res.records]
    assert tried[:7] == pytest.approx([1e-6, 1e-4, 1e-2, 1.0, 1e2, 1e4, 1e6])
    assert len(set(tried)) == len(tried)  # each C evaluated once
    assert solver.fitted == pytest.approx(tried)
    assert res.best_C == pytest.approx(GRID[61])
    # rounds around index 64 (C=1e2): +-8, then +-4 around 64, +-2 around 60 (60 and 62 tie:
    # the smaller C wins), +-1 around 60
    assert tried[7:] == pytest.approx([GRID[k] for k in (56, 72, 60, 68, 58, 62, 59, 61)])


def test_ties_go_to_stronger_regularisation() -> None:
    res, _ = run_search(lambda C: 0.8)
    assert res.best_C == pytest.approx(1e-6)
    res, _ = run_search(lambda C: 0.9 if C >= 1 else 0.5)
    assert res.best_C == pytest.approx(1.0)


def test_warm_start_interpolates_the_path_between_fitted_neighbours() -> None:
    from probe.evaluations.linear import _warm_start

    def fit(k, value):
        return Fit(coef=np.full((2, 3), value), intercept=np.array([value, -np.inf]),
                   iterations=1, converged=True, C=float(GRID[k]))  # fmt: skip

    done = {40: fit(40, 1.0), 48: fit(48, 3.0)}
    assert _warm_start(done, 30) is None  # nothing below: cold start
    assert _warm_start(done, 60) is done[48]  # nothing above: the nearest smaller C
    mid = _warm_start(done, 42)  # a quarter of the way from 40 to 48 in log C
    np.testing.assert_allclose(mid.coef, 1.5)
    assert mid.intercept[0] == pytest.approx(1.5) and np.isneginf(mid.intercept[1])
    # fitted at no C: not labelled with a neighbour's (it is made for C = GRID[42] itself)
    assert mid.C is None and mid.iterations == 0 and not mid.converged


def test_torch_takes_an_interpolated_start_over_a_farther_fit() -> None:
    """The torch solver picks among the protocol's start and a round's earlier fits by C; an
    interpolated start (C=None) is made for this C and wins over any fitted neighbour."""
    from probe.solvers.torch_solver import _closest_below

    def fit(C):
        return Fit(coef=np.zeros((2, 1)), intercept=np.zeros(2), iterations=1, converged=True,
                   C=C)  # fmt: skip

    mid = Fit(coef=np.ones((2, 1)), intercept=np.zeros(2), iterations=0, converged=False)
    earlier = [fit(1.0), fit(3.0)]
    assert _closest_below(2.0, mid, earlier) is mid
    assert _closest_below(2.0, fit(0.5), earlier) is earlier[0]  # the largest C not above
    assert _closest_below(2.0, None, []) is None


def test_metrics() -> None:
    y = np.array([0, 0, 0, 1])
    pred = np.array([0, 0, 0, 0])
    assert score(pred, y, "top1") == pytest.approx(75.0)
    assert score(pred, y, "mean_per_class") == pytest.approx(50.0)
    with pytest.raises(ProbeError, match="top5"):
        score(pred, y, "top5")


def test_stratified_holdout_is_deterministic_and_disjoint() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 7, size=1000)
    keep, hold = stratified_holdout(y, fraction=0.2, seed=3)
    keep2, hold2 = stratified_holdout(y, fraction=0.2, seed=3)
    assert np.array_equal(hold, hold2) and np.array_equal(keep, keep2)
    assert len(np.intersect1d(keep, hold)) == 0 and len(keep) + len(hold) == 1000
    assert len(hold) == 200
    for c in range(7):  # per class about 20%
        assert abs((y[hold] == c).sum() - 0.2 * (y == c).sum()) <= 1
    _, hold3 = stratified_holdout(y, count=50, seed=3)
    assert len(hold3) == 50
    with pytest.raises(ProbeError, match="fraction"):
        stratified_holdout(y, fraction=1.5)
