"""Few-shot linear probes: k training images per class, several seeded draws per k.

For each shot count k and seed s the k-shot training set is drawn from the protocol's train
split (the rows left after the validation carve, or all of train where val is official):
per class, in sorted class order, a seeded permutation of the class's rows, of which the
first k are taken. A class with fewer than k rows uses all it has (the result lists such
classes per k). Draws for one seed are nested: the 2-shot set holds the 1-shot set.

C is chosen without touching test: the CLIP search (`linear.search`, same grid and rule) on
a validation draw of k images per class from the protocol's validation split, which is
disjoint from train and test, drawn the same way with its own seed. The validation budget is
thus the training budget, as a few-shot user would have it. There is no refit: the head
scored on test is the k-shot fit at the chosen C (a refit on train + val would double the
shots).

Each k's `mean` over seeds comes with `score_ci`, its interval over test images with the
draws held fixed (`bootstrap.mean_score_ci`: how far the same heads could score on another
test set), and `std`, the spread over draws (null with one seed: there is none to measure).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.evaluations.bootstrap import mean_score_ci
from probe.evaluations.linear import search
from probe.evaluations.metrics import score
from probe.evaluations.outcome import Outcome, Task
from probe.solvers.base import Solver

log = logging.getLogger(__name__)
Pair = tuple[np.ndarray, np.ndarray]
VAL_STREAM = 1  # the validation draw's generator stream (the k-shot draw uses 0)


def draw(y: np.ndarray, *, k: int, seed: int, stream: int = 0) -> np.ndarray:
    """Sorted row indices: k per class (all of a smaller class), seeded, nested in k."""
    rng = np.random.Generator(np.random.PCG64([seed, stream]))
    y = np.asarray(y)
    picked = [rng.permutation(np.flatnonzero(y == c))[:k] for c in np.unique(y)]
    return np.sort(np.concatenate(picked))


def check_shots(shots: Sequence[int], seeds: int, y: np.ndarray) -> list[int]:
    shots = sorted({int(k) for k in shots})
    if not shots or shots[0] < 1:
        raise ProbeError(f"eval.shots={shots} must be positive integers, e.g. [1,2,4,8,16]")
    if int(seeds) < 1:
        raise ProbeError(f"eval.seeds={seeds} must be a positive integer, e.g. 5")
    largest = int(np.bincount(np.asarray(y)).max())
    if shots[-1] > largest:
        raise ProbeError(
            f"eval.shots={shots}: {shots[-1]} shots is more than any class has in train "
            f"(at most {largest}); use shots <= {largest}"
        )
    return shots


def _one(
    solver: Solver, *, k: int, seed: int, train: Pair, val: Pair, test: Pair, **task: Any
) -> dict[str, Any]:
    rows, vrows = draw(train[1], k=k, seed=seed), draw(val[1], k=k, seed=seed, stream=VAL_STREAM)
    shot = (np.asarray(train[0][rows]), train[1][rows])
    found = search(solver=solver, train=shot, val=(np.asarray(val[0][vrows]), val[1][vrows]),
                   **task)  # fmt: skip
    fit = found.fits[found.best_index]
    pred = solver.predict(fit, test[0])
    return {
        "correct": pred == test[1],
        "score": score(pred, test[1], task["metric"]),
        "C": found.best_C,
        "converged": bool(fit.converged),
        "n_train": len(rows),
        "n_val": len(vrows),
    }


def fewshot(
    *,
    solver: Solver,
    train: Pair,
    val: Pair,
    test: Pair,
    num_classes: int,
    metric: str,
    shots: Sequence[int],
    seeds: int,
    bootstrap: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """`by_k`: for each k (a string key) mean, its interval, std and the per-seed scores, C
    and sizes. `bootstrap`: `mean_score_ci`'s resamples, level and seed."""
    shots = check_shots(shots, seeds, train[1])
    counts = np.bincount(train[1], minlength=num_classes)
    present = np.flatnonzero(counts)
    by_k: dict[str, dict[str, Any]] = {}
    for k in shots:
        runs = [
            _one(
                solver,
                k=k,
                seed=s,
                train=train,
                val=val,
                test=test,
                num_classes=num_classes,
                metric=metric,
            )  # fmt: skip
            for s in range(int(seeds))
        ]
        scores = [r["score"] for r in runs]
        by_k[str(k)] = {
            "mean": float(np.mean(scores)),
            "score_ci": mean_score_ci(
                np.stack([r["correct"] for r in runs]), test[1], metric=metric, **(bootstrap or {})
            ),  # fmt: skip
            "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else None,  # none from one
            "scores": scores,
            "C": [r["C"] for r in runs],
            "converged": [r["converged"] for r in runs],
            "n_train": [r["n_train"] for r in runs],
            "n_val": [r["n_val"] for r in runs],
            "classes_short": [int(c) for c in present[counts[present] < k]],
        }
        log.info("few-shot k=%d: %s %.2f (std %s) over %d seeds", k, metric,
                 by_k[str(k)]["mean"], by_k[str(k)]["std"], len(scores))  # fmt: skip
    return by_k


def evaluate(
    task: Task, *, name: str = "fewshot", shots: Sequence[int] = (1, 2, 4, 8, 16), seeds: int = 5
) -> Outcome:
    """`eval=fewshot`: every shot count and seed; the record's `by_k`, shots and seeds."""
    solver = task.make_solver()
    by_k = fewshot(solver=solver, train=task.train, val=task.val, test=task.test,
                   num_classes=task.num_classes, metric=task.metric, shots=shots,
                   seeds=seeds, bootstrap=task.bootstrap)  # fmt: skip
    fields = {
        "by_k": by_k,
        "shots": [int(k) for k in by_k],
        "seeds": int(seeds),
        "selection": "CLIP search on a validation draw of k per class from the protocol's val "
        "split; no refit",
    }
    return Outcome(eval=name, fields=fields, backend=solver.name)
