"""`python -m probe.bench solvers`: the full CLIP search plus refit, per backend, same features.

For every problem and backend: the protocol's search over C on a carved 20% validation split,
the refit on train+val at the chosen C, and the test score; timed end to end (features
already in memory). Every backend runs its default: the CLIP paper's gradient rule
(`probe.solvers.base`), and each fit's `converged` is that rule's float64 certificate. Then,
untimed: every fit's objective recomputed in float64 with `probe.solvers.base.certify`, a
tight reference solve at the chosen C (torch, tol 1e-7 on the paper's sum-scaled gradient,
warm-started from the best fit there), and the comparison with scikit-learn at every C both
visited. Per backend it also prints where the time went (`probe.bench.counts`): passes over X
(matmul pairs), L-BFGS iterations (search and refit) and the share of the timed seconds
spent in float32 and in float64 passes.

A fair CPU comparison unsets `OPENBLAS_CORETYPE` and `OPENBLAS_L2_SIZE` for this command
(numpy's float32 and float64 matmuls are slower with them; see docs/solvers.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probe.bench import counts, peers, problems
from probe.bench.solver_report import LEGEND, jsonable, table
from probe.core.errors import ProbeError
from probe.datasets.splits import stratified_holdout
from probe.evaluations.linear import GRID, refit_and_test, search
from probe.solvers.base import Fit, certify

log = logging.getLogger(__name__)
BACKENDS = ("sklearn", "torch", "cuml", "sklearnex", "cyanure")
# Two float64 sums of the same objective over millions of terms differ in the last bits: a
# relative difference this small counts as equal ("at or below").
ROUNDING = 1e-12


def make_solver(backend: str, device: str) -> Any:
    if backend == "sklearn":
        from probe.solvers.sklearn import SklearnSolver

        return SklearnSolver()
    if backend == "torch":
        from probe.solvers.torch_solver import TorchSolver

        return TorchSolver(device=device)
    if backend == "cuml":
        from probe.solvers.cuml import CumlSolver

        return CumlSolver()
    if backend in peers.PEERS:
        return peers.make(backend)
    raise ProbeError(f"--backends: unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")


def run_backend(backend: str, device: str, prob: problems.Problem) -> dict[str, Any]:
    """The timed part: search on the carve, refit on train+val, score test."""
    keep, hold = stratified_holdout(prob.y, fraction=0.2, seed=0)
    train = (prob.X[keep], prob.y[keep])
    val = (prob.X[hold], prob.y[hold])
    solver = make_solver(backend, device)
    with _counting(backend) as tally:
        start = time.perf_counter()
        found, test_score, final = _search_and_refit(solver, prob, train, val)
        seconds = time.perf_counter() - start
    fits = {float(GRID[k]): f for k, f in found.fits.items()}
    if backend == "sklearnex" and not tally["passes"]:
        raise ProbeError("scikit-learn-intelex ran none of its own loss evaluations (it fell "
                         "back to stock scikit-learn); its row would be scikit-learn's: see "
                         "the sklearnex logger's messages for why")  # fmt: skip
    return {
        "backend": backend,
        "device": "cuda" if backend == "cuml" else device,
        "seconds": seconds,
        "test": test_score,
        "C": found.best_C,
        "search": found.records,
        "fits": fits,
        "final": final,
        "train": train,
        "iterations": sum(f.iterations for f in fits.values()) + final.iterations,
        **counts.counts_for(backend, solver, tally, seconds),
    }


def _counting(backend: str):
    """scipy's evaluations counted where a backend runs scipy's L-BFGS-B (`counts`)."""
    if backend == "sklearn":
        return counts.sklearn_counting()
    if backend == "sklearnex":
        return counts.sklearn_counting(counts.SKLEARNEX)
    return contextlib.nullcontext()


def missing_row(backend: str, why: str) -> dict[str, Any]:
    """A peer that cannot run here: its row says n/a and how to install it."""
    return {"backend": backend, "why_na": why}


def _search_and_refit(solver: Any, prob: problems.Problem, train: tuple, val: tuple):
    found = search(solver=solver, train=train, val=val, num_classes=prob.num_classes, metric="top1")
    test_score, final = refit_and_test(
        solver=solver,
        train=(prob.X, prob.y),
        test=(prob.Xt, prob.yt),
        C=found.best_C,
        num_classes=prob.num_classes,
        metric="top1",
        init=found.fits.get(found.best_index),
    )
    return found, test_score, final


def objective_fast(X: np.ndarray, y: np.ndarray, fit: Fit, C: float) -> float:
    """`probe.solvers.base.certify`'s float64 objective, on the GPU when there is one."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return certify(X, y, fit.coef, fit.intercept, C, device=device).objective


def tight_objective(prob: problems.Problem, C: float, starts: list[Fit]) -> float:
    """A very tightly converged solve at C, warm-started from the best of the given fits."""
    from probe.solvers.torch_solver import TorchSolver

    X, y = prob.X, prob.y
    best = min(starts, key=lambda f: objective_fast(X, y, f, C))
    solver = TorchSolver(device="cuda" if torch.cuda.is_available() else "cpu", tol=1e-7,
                         max_iter=3000)  # fmt: skip
    fit = solver.fit(X, y, C=C, num_classes=prob.num_classes, init=best)
    return min(objective_fast(X, y, f, C) for f in (*starts, fit))


def summarise(prob: problems.Problem, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Untimed: float64 objectives, gap at the chosen C, and per C the objective against
    scikit-learn's (`vs_sklearn`) and torch's against each other backend's (`torch_vs`)."""
    ran = [r for r in rows if "seconds" in r]
    for r in ran:
        X, y = r["train"]
        r["objectives"] = {C: objective_fast(X, y, f, C) for C, f in r["fits"].items()}
    by_backend = {r["backend"]: r for r in ran}
    ref, ours = by_backend.get("sklearn"), by_backend.get("torch")
    for r in ran:
        finals = [o["final"] for o in ran if o["C"] == r["C"]]
        opt = tight_objective(prob, r["C"], finals)
        final_obj = objective_fast(prob.X, prob.y, r["final"], r["C"])
        r["gap"] = (final_obj - opt) / abs(opt)
        if ref is not None and r is not ref:
            r["vs_sklearn"] = compare(r["objectives"], ref["objectives"])
        if ours is not None and r is not ours:
            r["torch_vs"] = compare(ours["objectives"], r["objectives"])
            r["torch_speedup"] = r["seconds"] / ours["seconds"]
        r["speedup"] = ref["seconds"] / r["seconds"] if ref is not None else None
        flags = [x["converged"] for x in r["search"]] + [r["final"].converged]
        r["converged"] = {"fits": len(flags), "converged": sum(flags)}
    return rows


def compare(mine: dict[float, float], theirs: dict[float, float]) -> dict[str, Any]:
    """At the C values both searched: how often `mine` is at or below `theirs` (to float64
    rounding, ROUNDING) and the largest relative difference (positive: mine above)."""
    common = sorted(set(mine) & set(theirs))
    rel = [(mine[C] - theirs[C]) / abs(theirs[C]) for C in common]
    return {"common_C": len(common), "at_or_below": sum(d <= ROUNDING for d in rel),
            "max_rel_diff": max(rel) if rel else None}  # fmt: skip


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m probe.bench solvers", description=__doc__)
    ap.add_argument(
        "--problems",
        default=",".join(problems.PROBLEMS),
        help=f"comma list of {', '.join(problems.PROBLEMS)} (default: all; imagenet on CPU is "
        "a 64,000-row subsample)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="small synthetic problems (4,000 rows, 8 per class for imagenet, width 256): "
        "minutes, for iterating; not the published table",
    )
    ap.add_argument(
        "--backends",
        default="auto",
        help="comma list of sklearn, torch, cuml, sklearnex, cyanure; auto: sklearn,torch "
        "(+cuml on GPU)",
    )
    ap.add_argument(
        "--peers",
        action="store_true",
        help="add the peers: sklearnex and cyanure (pip install -e '.[bench]'), cuml on GPU; "
        "one that cannot run here prints n/a and why",
    )
    ap.add_argument("--device", default="auto", help="torch backend device: auto, cpu, cuda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--max-train",
        type=int,
        default=None,
        help="cap the synthetic problems' training rows (a documented subsample)",
    )
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    return ap.parse_args(argv)  # fmt: skip


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("sklearnex").setLevel(logging.WARNING)  # a line per fit and predict
    args = parse(argv)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = device.startswith("cuda")
    backends = args.backends.split(",") if args.backends != "auto" else (
        ["torch", "sklearn"] + (["cuml"] if gpu else []))  # fmt: skip
    if args.peers:
        backends += [p for p in peers.PEERS if p not in backends]
    backends = sorted(backends, key=lambda b: b == "sklearn")  # the slow reference last
    results = []
    for name in args.problems.split(","):
        todo = backends
        if args.backends == "auto" and name == "imagenet" and gpu:  # days on CPU: not run
            todo = [b for b in backends if b not in ("sklearn", *peers.CPU_PEERS)]
        prob = problems.build(name, gpu=gpu, seed=args.seed, max_train=args.max_train,
                              quick=args.quick)  # fmt: skip
        rows = [_run_or_na(backend, device, prob) for backend in todo]
        results.append({"problem": name, "shape": prob.shape, "note": prob.note,
                        "threads": torch.get_num_threads(),
                        "rows": summarise(prob, rows)})  # fmt: skip
        print(table(results[-1:]), flush=True)
    print("\n" + table(results))
    print(LEGEND)
    if args.out:
        Path(args.out).write_text(json.dumps(jsonable(results), indent=2))
    return 0


def _run_or_na(backend: str, device: str, prob: problems.Problem) -> dict[str, Any]:
    """One backend's row; a peer that cannot run here gets an n/a row that says why."""
    why = peers.unavailable(backend, gpu=device.startswith("cuda")) if (
        backend in peers.PEERS) else None  # fmt: skip
    if why:
        log.warning("%s: %s n/a: %s", prob.name, backend, why)
        return missing_row(backend, why)
    log.info("%s (%s): %s on %s ...", prob.name, prob.shape, backend, device)
    row = run_backend(backend, device, prob)
    log.info("%s %s: %.1fs, test %.2f at C=%.3g", prob.name, backend, row["seconds"],
             row["test"], row["C"])  # fmt: skip
    return row
