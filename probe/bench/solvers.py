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

from probe.bench import counts, problems
from probe.core.errors import ProbeError
from probe.datasets.splits import stratified_holdout
from probe.evaluations.linear import GRID, refit_and_test, search
from probe.solvers.base import Fit, certify

log = logging.getLogger(__name__)
BACKENDS = ("sklearn", "torch", "cuml")
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
    raise ProbeError(f"--backends: unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")


def run_backend(backend: str, device: str, prob: problems.Problem) -> dict[str, Any]:
    """The timed part: search on the carve, refit on train+val, score test."""
    keep, hold = stratified_holdout(prob.y, fraction=0.2, seed=0)
    train = (prob.X[keep], prob.y[keep])
    val = (prob.X[hold], prob.y[hold])
    solver = make_solver(backend, device)
    counting = counts.sklearn_counting() if backend == "sklearn" else contextlib.nullcontext()
    with counting as tally:
        start = time.perf_counter()
        found, test_score, final = _search_and_refit(solver, prob, train, val)
        seconds = time.perf_counter() - start
    fits = {float(GRID[k]): f for k, f in found.fits.items()}
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
    """Untimed: float64 objectives, gap at the chosen C, per-C comparison with sklearn."""
    by_backend = {r["backend"]: r for r in rows}
    for r in rows:
        X, y = r["train"]
        r["objectives"] = {C: objective_fast(X, y, f, C) for C, f in r["fits"].items()}
    ref = by_backend.get("sklearn")
    for r in rows:
        finals = [o["final"] for o in rows if o["C"] == r["C"]]
        opt = tight_objective(prob, r["C"], finals)
        final_obj = objective_fast(prob.X, prob.y, r["final"], r["C"])
        r["gap"] = (final_obj - opt) / abs(opt)
        if ref is not None and r is not ref:
            common = sorted(set(r["objectives"]) & set(ref["objectives"]))
            rel = [(r["objectives"][C] - ref["objectives"][C]) / abs(ref["objectives"][C])
                   for C in common]  # fmt: skip
            r["vs_sklearn"] = {"common_C": len(common),
                               "at_or_below": sum(d <= ROUNDING for d in rel),
                               "max_rel_diff": max(rel) if rel else None}  # fmt: skip
        r["speedup"] = ref["seconds"] / r["seconds"] if ref is not None else None
        flags = [x["converged"] for x in r["search"]] + [r["final"].converged]
        r["converged"] = {"fits": len(flags), "converged": sum(flags)}
    return rows


def table(results: list[dict[str, Any]]) -> str:
    head = ("| problem | shape | backend | device | seconds | speedup | test % | C | gap |"
            " obj <= sklearn | converged | passes | iterations | f32 time | f64 time |\n"
            + "|---" * 15 + "|")  # fmt: skip
    lines = [head]
    for res in results:
        for r in res["rows"]:
            vs = r.get("vs_sklearn")
            cmp = f"{vs['at_or_below']}/{vs['common_C']} C" if vs else "-"
            speed = f"{r['speedup']:.1f}x" if r["speedup"] else "-"
            lines.append(
                f"| {res['problem']} | {res['shape']} | {r['backend']} | {r['device']} | "
                f"{r['seconds']:.1f} | {speed} | {r['test']:.2f} | {r['C']:.3g} | "
                f"{r['gap']:.1e} | {cmp} | {r['converged']['converged']}/"
                f"{r['converged']['fits']} | {_na(r['passes'], '{:,}')} | "
                f"{r['iterations']:,} | {_na(r['f32_share'], '{:.0%}')} | "
                f"{_na(r['f64_share'], '{:.0%}')} |"
            )
    return "\n".join(lines)


def _na(value: Any, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


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
        help="comma list of sklearn, torch, cuml; auto: sklearn,torch (+cuml on GPU)",
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
    args = parse(argv)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    backends = args.backends.split(",") if args.backends != "auto" else (
        ["torch", "sklearn"] + (["cuml"] if device.startswith("cuda") else []))  # fmt: skip
    backends = sorted(backends, key=lambda b: b == "sklearn")  # the slow reference last
    results = []
    for name in args.problems.split(","):
        todo = backends
        if args.backends == "auto" and name == "imagenet" and device.startswith("cuda"):
            todo = [b for b in backends if b != "sklearn"]  # days on CPU: not run by default
        prob = problems.build(name, gpu=device.startswith("cuda"), seed=args.seed,
                              max_train=args.max_train, quick=args.quick)  # fmt: skip
        rows = []
        for backend in todo:
            log.info("%s (%s): %s on %s ...", name, prob.shape, backend, device)
            row = run_backend(backend, device, prob)
            log.info("%s %s: %.1fs, test %.2f at C=%.3g", name, backend, row["seconds"],
                     row["test"], row["C"])  # fmt: skip
            rows.append(row)
        results.append({"problem": name, "shape": prob.shape, "note": prob.note,
                        "threads": torch.get_num_threads(),
                        "rows": summarise(prob, rows)})  # fmt: skip
        print(table(results[-1:]), flush=True)
    print("\n" + table(results))
    print(
        "gap: (objective - tight optimum) / optimum at the chosen C, float64; "
        "obj <= sklearn: searched C values where the objective is at or below sklearn's "
        "(to 1e-12 relative, float64 rounding); "
        "converged: fits (search and refit) meeting the paper's gradient rule; "
        "passes: matmul pairs over X (torch: float32 and float64 passes and the float64 "
        "certificates; sklearn: scipy's loss-and-gradient calls); iterations: L-BFGS "
        "iterations of the search and the refit; f32/f64 time: share of the seconds spent "
        "in passes of that precision"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(_jsonable(results), indent=2))
    return 0


def _jsonable(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = ("backend", "device", "seconds", "speedup", "test", "C", "gap", "vs_sklearn", "search",
            "objectives", "converged", "passes", "passes_by_kind", "iterations", "f32_share",
            "f64_share", "why_na")  # fmt: skip
    return [
        {
            **{k: v for k, v in res.items() if k != "rows"},
            "rows": [{k: r.get(k) for k in keep} for r in res["rows"]],
        }
        for res in results
    ]
