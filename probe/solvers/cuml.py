"""cuML's `LogisticRegression` (quasi-Newton, on the GPU) behind the same solver interface.

What the supported cuML releases (25.08 and later; docs/solvers.md quotes the source) do:
- **C.** `LogisticRegression` sets `l2_strength = 1.0 / C`, and the quasi-Newton solver
  divides it by the sample count when `penalty_normalized` is set (`cpp/src/glm/qn/qn.cuh`:
  `if (pams.penalty_normalized) { l1 /= X.m; l2 /= X.m; }`), on a *mean* log-loss: it
  minimises `mean loss + ||W||^2 / (2 C N)`, scikit-learn's objective divided by C N, so C
  passes unchanged. `penalty_normalized` is True in every supported release: 25.08 and 25.10
  have no such constructor argument and build `QN(...)` without it (QN's default is True);
  25.12 and later take it (default True) and hand it to `fit_qn`. We pass it where accepted.
- **Stopping.** cuML stops when `max |grad f| <= tol * max(f, tol)` on that mean objective f
  (the softmax and logistic losses measure the gradient in the max norm). A fit starts at
  zero, where f = log K (log 2 for two classes), and only accepts decreases, so with
  `tol = probe.tol / (N log K)` cuML's stop implies the protocol's `max |grad (N f)| <=
  probe.tol`. cuML also stops when f changed by less than `delta * max(f, tol)` over 10
  iterations, `delta = tol / 100`, which `LogisticRegression` does not expose: a fit ended
  that way before the gradient rule is reported as not converged, with its `grad_max`.
- **lbfgs_memory** is a constructor argument from 25.12 on; 25.08 and 25.10 always use QN's
  default of 5, so a different `probe.lbfgs_memory` there is ignored with a warning.
- **Precision.** float64 by default (`probe.dtype`): 25.08 to 26.06 convert X to float32
  unless `fit(..., convert_dtype=False)`, which we pass where `fit` defaults it to True.

A bare `import cuml` succeeds on a machine without a GPU, so usability is checked through
torch's CUDA runtime *before* cuML is imported.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.solvers.base import MAX_ITER, TOL, Fit, Solver, check_budget, refuse_removed
from probe.solvers.sklearn import fit_from_model

log = logging.getLogger(__name__)
INSTALL = 'pip install -e ".[cuml-cu13]" (or ".[cuml-cu12]" for CUDA 12)'
MIN_VERSION = (25, 8)  # keep in step with the cuml-cu12 / cuml-cu13 extras in pyproject.toml
QN_MEMORY = 5  # QN's lbfgs_memory default, all that cuML 25.08 and 25.10 ever use
DTYPES = ("float64", "float32")


def gpu_usable() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.device_count() > 0)


def require_cuml() -> Any:
    """cuML's LogisticRegression class, or a ProbeError that says what is missing."""
    if not gpu_usable():
        raise ProbeError(
            "probe=cuml needs a usable CUDA GPU, but none is visible here "
            "(torch.cuda.is_available() is False or no devices). Run on a GPU node with "
            f"cuML installed ({INSTALL}), or use probe=torch, which runs on CPU or GPU."
        )
    try:
        import cuml
        from cuml.linear_model import LogisticRegression
    except ImportError as err:
        raise ProbeError(f"probe=cuml needs cuML: {INSTALL} ({err})") from err
    version = str(getattr(cuml, "__version__", "0"))
    if tuple(int(x) for x in re.findall(r"\d+", version)[:2]) < MIN_VERSION:
        raise ProbeError(
            f"probe=cuml needs cuML >= {'.'.join(map(str, MIN_VERSION))} (found {version}): "
            f"{INSTALL}"
        )
    return LogisticRegression


def cuml_tol(tol: float, *, n_samples: int, n_classes: int) -> float:
    """cuML's `tol` whose stopping rule implies the protocol's (see module doc)."""
    return tol / (n_samples * math.log(max(n_classes, 2)))


def cuml_kwargs(
    cls: Any,
    *,
    C: float,
    n_samples: int,
    n_classes: int,
    max_iter: int,
    tol: float,
    linesearch_max_iter: int,
    lbfgs_memory: int,
) -> dict[str, Any]:
    """Constructor arguments giving scikit-learn's objective at this C (see module doc)."""
    params = inspect.signature(cls).parameters
    kwargs: dict[str, Any] = {
        "penalty": "l2",
        "C": float(C),
        "fit_intercept": True,
        "max_iter": max_iter,
        "tol": cuml_tol(tol, n_samples=n_samples, n_classes=n_classes),
        "linesearch_max_iter": linesearch_max_iter,
    }
    if "penalty_normalized" in params:
        kwargs["penalty_normalized"] = True
    if "lbfgs_memory" in params:
        kwargs["lbfgs_memory"] = lbfgs_memory
    return kwargs


def fit_kwargs(cls: Any) -> dict[str, Any]:
    """`convert_dtype=False` where `fit` would otherwise convert X to float32."""
    param = inspect.signature(cls.fit).parameters.get("convert_dtype")
    return {"convert_dtype": False} if param is not None and param.default is True else {}


def _host(a: Any) -> np.ndarray:
    """cuML returns cupy (or cudf) arrays; bring them to numpy."""
    if hasattr(a, "get"):
        a = a.get()
    elif hasattr(a, "to_numpy"):
        a = a.to_numpy()
    return np.asarray(a, dtype=np.float64)


class _Model:
    """What `fit_from_model` reads: sklearn-style attributes, on the host."""

    def __init__(self, model: Any) -> None:
        self.classes_ = _host(model.classes_).astype(int)
        self.coef_ = np.atleast_2d(_host(model.coef_))
        self.intercept_ = _host(model.intercept_).reshape(-1)


class CumlSolver(Solver):
    name = "cuml"

    def __init__(
        self,
        *,
        max_iter: int = MAX_ITER,
        tol: float = TOL,
        linesearch_max_iter: int = 50,
        lbfgs_memory: int = 10,
        dtype: str = "float64",
    ) -> None:
        check_budget(max_iter=max_iter, tol=tol)
        if dtype not in DTYPES:
            raise ProbeError(f"probe.dtype={dtype!r} is not valid; allowed: {', '.join(DTYPES)}")
        self.cls = require_cuml()
        self.max_iter, self.tol, self.dtype = max_iter, tol, dtype
        self.linesearch_max_iter, self.lbfgs_memory = linesearch_max_iter, lbfgs_memory
        if "lbfgs_memory" not in inspect.signature(self.cls).parameters and (
            lbfgs_memory != QN_MEMORY
        ):
            log.warning(
                "probe.lbfgs_memory=%s is ignored: this cuML's LogisticRegression takes no "
                "lbfgs_memory (cuML < 25.12 always uses %d); upgrade cuML to set it",
                lbfgs_memory, QN_MEMORY,
            )  # fmt: skip

    def fit(
        self, X: np.ndarray, y: np.ndarray, *, C: float, num_classes: int, init: Fit | None = None
    ) -> Fit:
        Xd = np.ascontiguousarray(X, dtype=self.dtype)
        kwargs = cuml_kwargs(
            self.cls, C=C, n_samples=len(y), n_classes=len(np.unique(y)),
            max_iter=self.max_iter, tol=self.tol,
            linesearch_max_iter=self.linesearch_max_iter, lbfgs_memory=self.lbfgs_memory,
        )  # fmt: skip
        model = self.cls(**kwargs)
        model.fit(Xd, np.asarray(y, dtype=self.dtype), **fit_kwargs(self.cls))
        iterations = int(np.max(_host(model.n_iter_)))
        return fit_from_model(_Model(model), Xd, y, C=C, num_classes=num_classes,
                              iterations=iterations, tol=self.tol,
                              device=_certificate_device())  # fmt: skip


def _certificate_device() -> str:
    """The float64 certificate runs on the GPU cuML fitted on (on CPU only in tests)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def build(
    *,
    max_iter: int = MAX_ITER,
    tol: float = TOL,
    linesearch_max_iter: int = 50,
    lbfgs_memory: int = 10,
    dtype: str = "float64",
    **options: Any,
) -> CumlSolver:
    refuse_removed(options)
    return CumlSolver(max_iter=max_iter, tol=tol, linesearch_max_iter=linesearch_max_iter,
                      lbfgs_memory=lbfgs_memory, dtype=dtype)  # fmt: skip
