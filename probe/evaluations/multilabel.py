"""The linear protocol on a multi-label dataset (VOC 2007): one-vs-rest logistic regressions.

Our linear probe is one multinomial softmax; an image of VOC 2007 holds several classes, so
each class gets its own binary logistic regression, all at one shared C, as dinov3 does:
`LogisticRegression(penalty="l2", solver="lbfgs", C=C, tol=1e-12, max_iter=1000)` wrapped in
`OneVsRestClassifier` whenever the labels are 2-D (facebookresearch/dinov3 6876159a,
dinov3/eval/log_regression.py lines 116-125 and 162). Each binary fit goes to the run's
backend (`probe=torch|sklearn|cuml`) as a two-class problem, which every backend solves as
scikit-learn's binary `LogisticRegression` at that C does (`probe.solvers.base`: the torch
solver's symmetric two-row softmax at C/2 has the same decision function), under the same
convergence rule as the multinomial probe. A class's score for an image is its decision
value `w_c x + b_c`: it ranks images as `predict_proba`'s column does (the sigmoid is
increasing), and AP depends on the ranking alone.

- **Targets.** Class c is present (1) when its devkit flag is 1 or 0 ("difficult": the class
  is in the image, in instances marked hard to recognise), absent (0) when -1: every
  annotated instance counts, as in dinov3's VOC targets (dinov3/data/transforms.py lines
  147-151) and CLIP_benchmark's (clip_benchmark/datasets/voc2007.py lines 152-194). The
  metric leaves difficult images out of that class's ranking, as the devkit does
  (`probe.evaluations.voc_map`).
- **C.** The CLIP search (`search.clip_binary`, the linear protocol's grid and schedule) by
  the val mAP, ties to the smaller C; then the 20 binary fits at that C on train + val, and
  the test mAP with a percentile bootstrap interval over test images (`voc_map.map_ci`).

A multi-label dataset has no single-label evaluation: `refuse_single_label` stops eval=knn
and eval=fewshot (and a single-label metric) in one line before anything is extracted.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from probe.core import preempt
from probe.core.errors import ProbeError
from probe.core.rows import BLOCK, Rows
from probe.datasets.base import MULTILABEL_METRICS
from probe.evaluations.linear import GRID, INITIAL, STEPS, _warm_start
from probe.evaluations.outcome import Outcome, Task
from probe.evaluations.search import clip_binary
from probe.evaluations.voc_map import class_aps, map_ci, mean_ap
from probe.solvers.base import Fit, Solver

log = logging.getLogger(__name__)
EVALS = ("linear",)  # the evaluations a multi-label dataset has


def is_multilabel(metric: str) -> bool:
    return metric in MULTILABEL_METRICS


def refuse_single_label(*, metric: str, eval_name: str, dataset: str) -> None:
    """A multi-label dataset never reaches a single-label evaluation."""
    if is_multilabel(metric) and eval_name not in EVALS:
        raise ProbeError(
            f"dataset {dataset} is multi-label (metric {metric}): eval={eval_name} scores one "
            f"label per image; use eval=linear (one-vs-rest logistic regressions, the devkit's "
            "11-point mAP)"
        )


def targets(flags: np.ndarray) -> list[np.ndarray]:
    """Per class, the binary training labels: 1 present or difficult (flag 1 or 0), 0 absent."""
    present = (np.asarray(flags) != -1).astype(np.int64)
    return [np.ascontiguousarray(present[:, c]) for c in range(present.shape[1])]


def decision(fits: list[Fit], X: Any) -> np.ndarray:
    """(N, K) float32 scores w_c x + b_c of K binary heads, read in blocks of rows."""
    W, b = head(fits)
    rows = Rows.of(X)
    out = np.empty((len(rows), len(fits)), dtype=np.float32)
    for s in range(0, len(rows), BLOCK):
        out[s : s + BLOCK] = rows.read(s, s + BLOCK) @ W.T.astype(np.float32) + b
    return out


def head(fits: list[Fit]) -> tuple[np.ndarray, np.ndarray]:
    """(K, D) weights and (K,) intercepts of the binary heads: row 1 minus row 0 of each
    two-class fit (scikit-learn's `coef_[0]` and `intercept_[0]`)."""
    W = np.stack([np.asarray(f.coef[1], np.float64) - f.coef[0] for f in fits])
    b = np.array([float(f.intercept[1] - f.intercept[0]) for f in fits])
    return W, b


def _summary(fits: list[Fit]) -> dict[str, Any]:
    grads = [f.grad_max for f in fits if f.grad_max is not None]
    return {"converged": all(f.converged for f in fits),
            "iterations": max(int(f.iterations) for f in fits),
            "grad_max": max(grads) if grads else None}  # fmt: skip


def _fit_classes(
    solver: Solver, X: Any, ys: list[np.ndarray], *, Cs: list[float], inits: list[list]
) -> list[list[Fit]]:
    """[class][C] binary fits at each C of `Cs` (ascending), class by class."""
    return [solver.fit_many(X, y, Cs=Cs, num_classes=2, inits=init)
            for y, init in zip(ys, inits, strict=True)]  # fmt: skip


def evaluate(task: Task, *, name: str = "linear", **_: Any) -> Outcome:
    """The search on val by mAP, the refit on train + val, the test mAP and its interval."""
    (X, flags), (Xv, flags_v), (Xt, flags_t) = task.train, task.val, task.test
    if np.ndim(flags) != 2:
        raise ProbeError(
            f"metric={task.metric} needs multi-label labels (N x K flags), not labels of shape "
            f"{np.shape(flags)}; use metric=top1 or mean_per_class for one label per image"
        )
    solver = task.make_solver()
    both = Rows.cat(X, Xv)
    search_rows = both.head(len(flags))  # the refit's copy serves the search (linear.py)
    ys = targets(flags)
    done: list[dict[int, Fit]] = [{} for _ in ys]
    records: list[dict[str, Any]] = []
    strategy = task.strategy or clip_binary(grid=GRID, initial=INITIAL, steps=STEPS)
    grid = strategy.grid
    seen: dict[int, float] = {}

    def score_at(points: list[int]) -> dict[int, float]:
        new = sorted(k for k in set(points) if k not in seen)
        if new:
            seen.update(_search_round(new))
        return {k: seen[k] for k in points}

    def _search_round(points: list[int]) -> dict[int, float]:
        t0 = time.perf_counter()
        inits = [[_warm_start(d, k) for k in points] for d in done]
        fits = _fit_classes(solver, search_rows, ys, Cs=[grid[k] for k in points], inits=inits)
        preempt.checkpoint(f"stopped during the C search, after {len(records)} values")
        seconds = (time.perf_counter() - t0) / len(points)
        got = {}
        for j, k in enumerate(points):
            at_k = [per_class[j] for per_class in fits]
            for c, fit in enumerate(at_k):
                done[c][k] = fit
            got[k] = mean_ap(decision(at_k, Xv), flags_v)
            records.append({"C": float(grid[k]), "val_score": got[k], **_summary(at_k)})
            log.info("search C=%.3g: val map11 %.2f (%d binary fits%s, %.1fs)", grid[k], got[k],
                     len(at_k), "" if records[-1]["converged"] else ", NOT all converged",
                     seconds)  # fmt: skip
        return got

    best = strategy.choose(score_at)
    C = float(grid[best])
    if task.refit_on == "train":  # a card that fits train alone (linear.REFIT_RULES)
        rows, y_final = search_rows, ys
    else:
        rows, y_final = both, targets(np.concatenate([np.asarray(flags), np.asarray(flags_v)]))
    final = [f[0] for f in _fit_classes(solver, rows, y_final, Cs=[C],
                                        inits=[[d.get(best)] for d in done])]  # fmt: skip
    solver.release()
    _warn(records, final, C)
    scores = decision(final, Xt)
    flags_t = np.asarray(flags_t, dtype=np.int64)
    W, b = head(final)
    fields = {
        "score": mean_ap(scores, flags_t),
        "score_ci": map_ci(scores, flags_t, **task.bootstrap),
        "top5": None,  # no top-5 for a multi-label dataset
        "class_ap": [float(a) * 100.0 for a in class_aps(scores, flags_t)],
        "C": C,
        "search": records,
        "final_fit": _summary(final),
        "converged": bool(_summary(final)["converged"] and all(r["converged"] for r in records)),
        "multilabel": "one-vs-rest binary logistic regressions at one shared C",
    }
    outputs = {"test_label": flags_t, "test_score": scores}
    return Outcome(eval=name, fields=fields, backend=solver.name,
                   head={"coef": W, "intercept": b, "C": C, "outputs": outputs})  # fmt: skip


def _warn(records: list[dict[str, Any]], final: list[Fit], C: float) -> None:
    bad = [r["C"] for r in records if not r["converged"]]
    if bad:
        log.warning("%d of %d searched C values had a binary fit that did not converge (C=%s)",
                    len(bad), len(records), ", ".join(f"{c:.3g}" for c in bad))  # fmt: skip
    unconverged = [c for c, f in enumerate(final) if not f.converged]
    if unconverged:
        log.warning("final fits at C=%.3g did not converge for classes %s", C,
                    ", ".join(map(str, unconverged)))  # fmt: skip
