"""Where a backend's time goes: passes over X, iterations, and seconds by matmul precision.

One pass is one matmul pair over the training rows (logits `X W^T`, then gradient `R^T X`).
torch: the solver's own `passes.Counter` (float32 and TF32 passes, float64 passes, and the
float64 certificates, one pass each). scikit-learn: its L-BFGS runs in scipy, called as
`optimize.minimize(func, w0, method="L-BFGS-B", jac=True, ...)` in
`sklearn/linear_model/_logistic.py` (1.9.1: line 584), where every call of `func` is the loss
and its gradient on float64 X: one float64 pass. `sklearn_counting` wraps that `minimize`
for the duration of a run and times every `func` call, so scikit-learn's code path is
unchanged and scipy's own count is what is reported; the certificate our backend adds to
each of its fits (`probe.solvers.base.certified_fit`) is not among them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

F32 = ("float32", "tf32")
F64 = ("float64", "certificate")


class _Optimize:
    """`scipy.optimize` as scikit-learn's module sees it, with `minimize` counted."""

    def __init__(self, real: Any, tally: dict[str, float]) -> None:
        self._real, self._tally = real, tally

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def minimize(self, fun: Any, x0: Any, *args: Any, **kwargs: Any) -> Any:
        tally = self._tally

        def timed(*a: Any, **kw: Any) -> Any:
            start = time.perf_counter()
            try:
                return fun(*a, **kw)
            finally:
                tally["float64"] += time.perf_counter() - start
                tally["passes"] += 1

        res = self._real.minimize(timed, x0, *args, **kwargs)
        tally["nfev"] += int(getattr(res, "nfev", 0))
        return res


SKLEARN = "sklearn.linear_model._logistic"
# scikit-learn-intelex 2026.2.0 keeps scipy's L-BFGS-B and hands it oneDAL's loss and
# gradient (`_daal4py_loss_and_grad`): `daal4py/sklearn/linear_model/logistic_path.py`,
# line 53 `import scipy.optimize as optimize`, lines 367-380 `optimize.minimize(func, w0,
# method="L-BFGS-B", jac=True, ...)`; one call of func is one pass over X in X's dtype
SKLEARNEX = "daal4py.sklearn.linear_model.logistic_path"


@contextlib.contextmanager
def sklearn_counting(module: str = SKLEARN) -> Iterator[dict[str, float]]:
    """Counts and times the loss-and-gradient evaluations that `module` (scikit-learn's or
    scikit-learn-intelex's logistic path) hands scipy's L-BFGS-B inside the block."""
    import importlib

    where = importlib.import_module(module)
    tally = {"passes": 0, "nfev": 0, "float64": 0.0}
    real = where.optimize
    where.optimize = _Optimize(real, tally)
    try:
        yield tally
    finally:
        where.optimize = real


def torch_counts(counter: Any, seconds: float) -> dict[str, Any]:
    """Passes and time shares from the torch solver's `passes.Counter`."""
    by_kind = dict(counter.passes)
    return {
        "passes": sum(by_kind.values()),
        "passes_by_kind": by_kind,
        "f32_share": sum(counter.seconds.get(k, 0.0) for k in F32) / seconds,
        "f64_share": sum(counter.seconds.get(k, 0.0) for k in F64) / seconds,
    }


def sklearn_counts(tally: dict[str, float], seconds: float) -> dict[str, Any]:
    """Passes (scipy's evaluations) and the float64 share from `sklearn_counting`."""
    return {
        "passes": int(tally["passes"]),
        "passes_by_kind": {"float64": int(tally["passes"]), "scipy_nfev": int(tally["nfev"])},
        "f32_share": 0.0,
        "f64_share": tally["float64"] / seconds,
    }


def counts_for(backend: str, solver: Any, tally: dict[str, float] | None, seconds: float):
    """The columns for one backend's run: torch's counter, scipy's evaluations (sklearn,
    sklearnex), cyanure's epochs; cuML runs on the GPU in one opaque call: n/a."""
    if backend == "torch":
        return torch_counts(solver.counter, seconds)
    if tally is not None:
        return sklearn_counts(tally, seconds)
    if hasattr(solver, "epochs"):
        why = ("cyanure reports epochs (passes of its incremental solver over X, duality-gap "
               "checks not counted) and no time by precision")  # fmt: skip
        return {"passes": solver.epochs, "passes_by_kind": {"epochs": solver.epochs},
                "f32_share": None, "f64_share": None, "why_na": why}  # fmt: skip
    why = "cuML's quasi-Newton runs in one native call that reports iterations only"
    return {"passes": None, "passes_by_kind": {}, "f32_share": None, "f64_share": None,
            "why_na": why}  # fmt: skip
