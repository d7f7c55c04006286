"""scikit-learn's `LogisticRegression` (L-BFGS): the reference backend the CLIP paper used."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.solvers.base import Fit, Solver, objective, start_gradient

log = logging.getLogger(__name__)


class SklearnSolver(Solver):
    name = "sklearn"

    def __init__(self, *, max_iter: int = 1000, tol: float = 1e-4, tol_relative: bool = True):
        if max_iter <= 0 or tol <= 0:
            raise ProbeError(f"probe.max_iter={max_iter} and probe.tol={tol} must be positive")
        self.max_iter = max_iter
        self.tol = tol
        self.tol_relative = tol_relative

    def fit(
        self, X: np.ndarray, y: np.ndarray, *, C: float, num_classes: int, init: Fit | None = None
    ) -> Fit:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        X64 = np.asarray(X, dtype=np.float64)
        tol = self.tol * start_gradient(X64, y, num_classes) if self.tol_relative else self.tol
        model = LogisticRegression(C=C, solver="lbfgs", max_iter=self.max_iter, tol=tol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X64, y)
        return fit_from_model(
            model, X64, y, C=C, num_classes=num_classes,
            iterations=int(np.max(model.n_iter_)), max_iter=self.max_iter,
        )  # fmt: skip


def fit_from_model(
    model: Any,
    X: np.ndarray,
    y: np.ndarray,
    *,
    C: float,
    num_classes: int,
    iterations: int,
    max_iter: int,
) -> Fit:
    """A `Fit` from any fitted model with sklearn's attributes (sklearn's own, or cuML's)."""
    coef, intercept = _full_classes(model, num_classes, X.shape[1])
    return Fit(
        coef=coef,
        intercept=intercept,
        iterations=iterations,
        converged=iterations < max_iter,
        objective=objective(X, y, coef, intercept, C),
        C=float(C),
    )


def _full_classes(model: Any, num_classes: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """sklearn only knows the classes present in y; absent classes can never be predicted."""
    classes = model.classes_.astype(int)
    coef = np.zeros((num_classes, dim))
    intercept = np.full(num_classes, -np.inf)
    if len(classes) == 2 and model.coef_.shape[0] == 1:  # binary: one row, symmetric softmax
        half = model.coef_[0] / 2.0
        coef[classes] = np.stack([-half, half])
        intercept[classes] = np.array([-model.intercept_[0] / 2.0, model.intercept_[0] / 2.0])
    else:
        coef[classes] = model.coef_
        intercept[classes] = model.intercept_
    return coef, intercept


def build(*, max_iter: int = 1000, tol: float = 1e-4, tol_relative: bool = True, **_: Any):
    return SklearnSolver(max_iter=max_iter, tol=tol, tol_relative=tol_relative)
