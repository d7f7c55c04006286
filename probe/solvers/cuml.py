"""cuML's `LogisticRegression` (quasi-Newton, on the GPU) behind the same solver interface.

C mapping. cuML's quasi-Newton solver minimises a *mean* log-loss plus
`0.5 * l2 * ||W||^2` with `l2 = 1 / C` (its `Tikhonov` penalty). With
`penalty_normalized=True` (cuML 23.x and later, the default) `l2` is divided by the sample
count, which gives `mean loss + ||W||^2 / (2 C N)` = scikit-learn's objective / (C N): the
same C. Older cuML without that argument needs `C_cuml = C * N` for the same minimiser;
`cuml_kwargs` does that translation (tested with a stand-in module).

A bare `import cuml` succeeds on a machine without a GPU, so usability is checked through
torch's CUDA runtime *before* cuML is imported.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.solvers.base import Fit, Solver
from probe.solvers.sklearn import fit_from_model

log = logging.getLogger(__name__)
INSTALL = 'pip install -e ".[cuml-cu13]" (or ".[cuml-cu12]" for CUDA 12)'


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
        from cuml.linear_model import LogisticRegression
    except ImportError as err:
        raise ProbeError(f"probe=cuml needs cuML: {INSTALL} ({err})") from err
    return LogisticRegression


def cuml_kwargs(
    cls: Any, *, C: float, n_samples: int, max_iter: int, tol: float, **extra: Any
) -> dict[str, Any]:
    """Constructor arguments giving scikit-learn's objective at this C (see module doc)."""
    params = inspect.signature(cls).parameters
    kwargs: dict[str, Any] = {"penalty": "l2", "fit_intercept": True, "max_iter": max_iter,
                              "tol": tol}  # fmt: skip
    if "penalty_normalized" in params:
        kwargs.update(C=float(C), penalty_normalized=True)
    else:  # old cuML: l2 = 1/C on a mean loss
        kwargs["C"] = float(C) * n_samples
    kwargs.update({k: v for k, v in extra.items() if k in params})
    return kwargs


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
        max_iter: int = 1000,
        tol: float = 1e-6,
        linesearch_max_iter: int = 50,
        lbfgs_memory: int = 10,
    ) -> None:
        if max_iter <= 0 or tol <= 0:
            raise ProbeError(f"probe.max_iter={max_iter} and probe.tol={tol} must be positive")
        self.cls = require_cuml()
        self.max_iter, self.tol = max_iter, tol
        self.extra = {"linesearch_max_iter": linesearch_max_iter, "lbfgs_memory": lbfgs_memory}

    def fit(
        self, X: np.ndarray, y: np.ndarray, *, C: float, num_classes: int, init: Fit | None = None
    ) -> Fit:
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        kwargs = cuml_kwargs(self.cls, C=C, n_samples=len(y), max_iter=self.max_iter,
                             tol=self.tol, **self.extra)  # fmt: skip
        model = self.cls(**kwargs)
        model.fit(X32, np.asarray(y, dtype=np.float32))
        iterations = int(np.max(_host(getattr(model, "n_iter_", [self.max_iter]))))
        return fit_from_model(
            _Model(model), X32, y, C=C, num_classes=num_classes,
            iterations=iterations, max_iter=self.max_iter,
        )  # fmt: skip


def build(
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
    linesearch_max_iter: int = 50,
    lbfgs_memory: int = 10,
    **_: Any,
) -> CumlSolver:
    return CumlSolver(max_iter=max_iter, tol=tol, linesearch_max_iter=linesearch_max_iter,
                      lbfgs_memory=lbfgs_memory)  # fmt: skip
