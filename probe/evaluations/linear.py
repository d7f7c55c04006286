"""The CLIP paper's linear-probe protocol (appendix A.3): search C on val, refit, score test.

The regularisation grid is 97 log-spaced values from 1e-6 to 1e6 (8 per decade). The search
evaluates every 16th point, then halves the step (8, 4, 2, 1 grid points) around the best,
comparing the best with its two neighbours at each step. Ties go to the smaller C (stronger
regularisation). Points are never refitted: each C is evaluated once and recorded in the order
it was tried.

The protocol is three parts, each callable on its own (the CLI, the Python API's
`LinearProbe` and the benches use them alike): `select_C` (the search on val, the grid and
its schedule as parameters), `refit` (one fit at the chosen C on train + val) and the test
score; `run_protocol` chains them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probe.core import preempt
from probe.core.errors import ProbeError
from probe.core.rows import Rows
from probe.evaluations.bootstrap import interval_fields
from probe.evaluations.heads import test_outputs, top5_accuracy
from probe.evaluations.metrics import needs_scores, score, score_outputs
from probe.evaluations.outcome import Outcome, Task
from probe.evaluations.search import ClipBinary, Strategy, clip_grid
from probe.solvers.base import Fit, Solver

log = logging.getLogger(__name__)

Pair = tuple[np.ndarray | Rows, np.ndarray]
GRID = clip_grid()  # 1e-6 .. 1e6, 8 per decade
INITIAL = list(range(0, 97, 16))
STEPS = (8, 4, 2, 1)
TRAIN_VAL = "train+val"
REFIT_RULES = (TRAIN_VAL, "train")


@dataclass
class SearchResult:
    best_C: float
    best_index: int
    records: list[dict[str, Any]] = field(default_factory=list)
    fits: dict[int, Fit] = field(default_factory=dict)


def fit_score(solver: Solver, fit: Fit, data: Pair, metric: str) -> float:
    """`metric` of `fit` on `data`: from the backend's predicted classes, or for a metric read
    from scores (roc_auc, top1_top5_mean) from the head's outputs on those rows."""
    X, y = data
    if not needs_scores(metric):
        return score(solver.predict(fit, X), y, metric)
    return score_outputs(test_outputs(solver, fit, data, decision=metric == "roc_auc"), metric)


def _warm_start(done: dict[int, Fit], k: int) -> Fit | None:
    """Warm start for grid point k, from the fits already evaluated around it.

    Between two fitted points (every refinement round) the regularisation path is
    interpolated linearly in log C, which lands far closer to the new optimum than either
    neighbour; otherwise the fit at the closest smaller C. An interpolated start was fitted
    at no C, so it carries none (`C=None`): a backend takes it as made for this very point.
    Backends that cold-start (scikit-learn, cuML) ignore it; the optimum does not depend on it.
    """
    below = [j for j in done if j < k]
    above = [j for j in done if j > k]
    if not below:
        return None
    lo = done[max(below)]
    if not above:
        return lo
    hi = done[min(above)]
    w = (k - max(below)) / (min(above) - max(below))  # the grid is uniform in log C
    keep = np.isfinite(lo.intercept) & np.isfinite(hi.intercept)
    intercept = np.where(keep, (1 - w) * lo.intercept + w * hi.intercept, lo.intercept)
    coef = (1 - w) * np.asarray(lo.coef) + w * np.asarray(hi.coef)
    return Fit(coef=coef, intercept=intercept, iterations=0, converged=False, C=None)


def search(
    *,
    solver: Solver,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    metric: str,
    grid: np.ndarray = GRID,
    initial: Sequence[int] = INITIAL,
    steps: Sequence[int] = STEPS,
    strategy: Strategy | None = None,
) -> SearchResult:
    """Choose C on val by `metric`: each point the strategy asks for is fitted once on train,
    scored on val and recorded in the order it was tried.

    `strategy` (`probe.evaluations.search`) walks its own grid; without one, the CLIP search
    on `grid` (ascending; the search works on its indices) from the `initial` indices with
    the refinement half-widths `steps`."""
    if strategy is None:
        strategy = ClipBinary(grid=np.asarray(grid), initial=tuple(initial), steps=tuple(steps))
    grid = strategy.grid
    X, y = train
    Xv, yv = val
    res = SearchResult(best_C=float("nan"), best_index=-1)
    scores: dict[int, float] = {}

    def score_points(points: list[int]) -> dict[int, float]:
        new = sorted(k for k in set(points) if k not in scores)
        if new:
            fit_points(new)
        return {k: scores[k] for k in points}

    def fit_points(new: list[int]) -> None:
        t0 = time.perf_counter()
        inits = [_warm_start(res.fits, k) for k in new]
        fits = solver.fit_many(
            X, y, Cs=[grid[k] for k in new], num_classes=num_classes, inits=inits
        )
        seconds = (time.perf_counter() - t0) / len(new)
        # a safe place to stop: SIGTERM's own raise is lost if it lands in a finalizer
        preempt.checkpoint(f"stopped during the C search, after {len(res.records)} values")
        for k, fit in zip(new, fits, strict=True):
            scores[k] = fit_score(solver, fit, (Xv, yv), metric)
            res.fits[k] = fit
            rec = {
                "C": float(grid[k]),
                "val_score": scores[k],
                "converged": bool(fit.converged),
                "iterations": int(fit.iterations),
                "grad_max": fit.grad_max,  # the certificate behind `converged` (solvers.base)
            }
            res.records.append(rec)
            log.info(
                "search C=%.3g: val %s %.2f (%d iterations%s, %.1fs)",
                grid[k], metric, scores[k], fit.iterations,
                "" if fit.converged else ", NOT converged", seconds,
            )  # fmt: skip

    res.best_index = strategy.choose(score_points)
    res.best_C = float(grid[res.best_index])
    return res


def select_C(
    *,
    solver: Solver,
    train: Pair,
    val: Pair,
    num_classes: int,
    metric: str,
    **schedule: Any,
) -> SearchResult:
    """The C the protocol chooses on val (`search`; `schedule`: its grid, initial points and
    steps), warning about every searched C whose fit did not meet the rule."""
    found = search(solver=solver, train=train, val=val, num_classes=num_classes,
                   metric=metric, **schedule)  # fmt: skip
    _warn_unconverged(found.records, getattr(solver, "max_iter", None))
    return found


def refit(
    *, solver: Solver, train: Pair, C: float, num_classes: int, init: Fit | None = None
) -> Fit:
    """The final head: one fit at the chosen C on the rows given (train + val)."""
    fit = solver.fit(train[0], train[1], C=C, num_classes=num_classes, init=init)
    if not fit.converged:
        log.warning(
            "final fit at C=%.3g did not converge in %d iterations (max |gradient| %.3g, "
            "above probe.tol)", C, fit.iterations, fit.grad_max if fit.grad_max is not None
            else float("nan"),
        )  # fmt: skip
    return fit


def refit_and_test(
    *,
    solver: Solver,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    C: float,
    num_classes: int,
    metric: str,
    init: Fit | None = None,
) -> tuple[float, Fit]:
    fit = refit(solver=solver, train=train, C=C, num_classes=num_classes, init=init)
    return fit_score(solver, fit, test, metric), fit


def _warn_unconverged(records: list[dict[str, Any]], max_iter: Any) -> None:
    bad = [r["C"] for r in records if not r["converged"]]
    if bad:
        log.warning(
            "%d of %d searched C values did not converge within probe.max_iter=%s (the gradient "
            "rule fails at C=%s); the result records converged=false for them",
            len(bad), len(records), max_iter, ", ".join(f"{c:.3g}" for c in bad),
        )  # fmt: skip


@dataclass
class Protocol:
    """What the search and the refit found."""

    found: SearchResult
    test_score: float
    final: Fit


def run_protocol(
    *,
    solver: Solver,
    train: Pair,
    val: Pair,
    test: Pair,
    num_classes: int,
    metric: str,
    strategy: Strategy | None = None,
    refit_on: str = TRAIN_VAL,
) -> Protocol:
    """The search on val, then the refit at the chosen C, scored on test.

    The refit is on train + val (`refit_on="train+val"`: the CLIP paper's and dinov2's rule) or
    on train alone (`"train"`). train + val is a row selection (`Rows.cat`), not a copy, and
    the search's rows are its first rows (`head`), so a solver that keeps its own copy of the
    features makes one for both fits; the copy is released before the caller goes on."""
    if refit_on not in REFIT_RULES:
        raise ProbeError(f"refit_on={refit_on!r} unknown; allowed: {', '.join(REFIT_RULES)}")
    both = Rows.cat(train[0], val[0])
    y_both = np.concatenate([np.asarray(train[1]), np.asarray(val[1])])
    first = (both.head(len(train[1])), train[1])
    found = select_C(solver=solver, train=first, val=val, num_classes=num_classes,
                     metric=metric, strategy=strategy)  # fmt: skip
    test_score, final = refit_and_test(
        solver=solver, train=(both, y_both) if refit_on == TRAIN_VAL else first, test=test,
        C=found.best_C, num_classes=num_classes, metric=metric,
        init=found.fits.get(found.best_index),
    )  # fmt: skip
    solver.release()
    return Protocol(found=found, test_score=test_score, final=final)


def evaluate(task: Task, *, name: str = "linear", **_: Any) -> Outcome:
    """The protocol end to end: the search on val, the refit on train + val, the test score
    with its bootstrap interval, and the head with the test outputs to save."""
    from probe.evaluations import multilabel  # a multi-label dataset: one-vs-rest heads

    if multilabel.is_multilabel(task.metric):
        return multilabel.evaluate(task, name=name)
    solver = task.make_solver()
    done = run_protocol(solver=solver, train=task.train, val=task.val, test=task.test,
                        num_classes=task.num_classes, metric=task.metric,
                        strategy=task.strategy, refit_on=task.refit_on)  # fmt: skip
    found, test_score, final = done.found, done.test_score, done.final
    # labels, the predictions scored, top-5 (and the decision values ROC AUC ranks)
    outputs = test_outputs(solver, final, task.test, decision=task.metric == "roc_auc")
    top5 = top5_accuracy(outputs)
    fields = {
        "score": test_score,
        "top5": top5,  # percent; null with fewer than 5 classes
        **interval_fields(
            pred=outputs["test_pred"],
            y=outputs["test_label"],
            metric=task.metric,
            top5=outputs["test_top5"] if top5 is not None else None,
            decision=outputs.get("test_score"),
            **task.bootstrap,
        ),  # fmt: skip
        "C": found.best_C,
        "search": found.records,
        "final_fit": {
            "converged": final.converged,
            "iterations": final.iterations,
            "grad_max": final.grad_max,
        },  # fmt: skip
        "converged": bool(final.converged and all(r["converged"] for r in found.records)),
    }
    if task.metric == "top1_top5_mean":  # the mean's other half, percent
        fields["top1"] = score(outputs["test_pred"], outputs["test_label"], "top1")
    head = {"coef": final.coef, "intercept": final.intercept, "C": found.best_C,
            "outputs": outputs}  # fmt: skip
    return Outcome(eval=name, fields=fields, head=head, backend=solver.name)
