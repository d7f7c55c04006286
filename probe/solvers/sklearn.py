"""scikit-learn's `LogisticRegression` (L-BFGS): the reference backend the CLIP paper used.

The paper ran scikit-learn 0.2x, whose lbfgs minimised `sum loss + ||W||^2 / (2C)` with
scipy's `pgtol = tol = 1e-4`. scikit-learn 1.4 and later minimise the *mean* loss instead
(`_linear_loss.py`: `loss = loss.sum() / sw_sum`; `_logistic.py`:
`l2_reg_strength = 1.0 / (C * sw_sum)`) and hand `tol` to scipy as `gtol` on that mean
objective, whose gradient is the sum-scaled one divided by N. So the paper's rule is
`tol = probe.tol / N` there, on float64 input (docs/solvers.md quotes the lines). scikit-learn
1.3 still minimised the sum; we require 1.4 or later rather than carry both scales.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.solvers.base import (
    MAX_ITER,
    TOL,
    Fit,
    Solver,
    certified_fit,
    check_budget,
    refuse_removed,
)

log = logging.getLogger(__name__)
MEAN_LOSS_SINCE = (1, 4)  # the first scikit-learn whose lbfgs minimises the mean loss


def require_mean_loss_sklearn(version: str) -> None:
    """The tolerance mapping assumes the mean-loss objective: refuse older scikit-learn."""
    found = tuple(int(x) for x in re.findall(r"\d+", version)[:2])
    if found < MEAN_LOSS_SINCE:
        raise ProbeError(
            f"probe=sklearn needs scikit-learn >= 1.4 (found {version}): its tolerance is "
            "mapped onto the mean-loss objective 1.4 introduced; pip install 'scikit-learn>=1.4'"
        )


class SklearnSolver(Solver):
    name = "sklearn"

    def __init__(self, *, max_iter: int = MAX_ITER, tol: float = TOL) -> None:
        import sklearn

        check_budget(max_iter=max_iter, tol=tol)
        require_mean_loss_sklearn(sklearn.__version__)
        self.max_iter, self.tol = max_iter, tol
        self._source: Any = None
        self._x64: np.ndarray | None = None

    def float64(self, X: Any) -> np.ndarray:
        """X as scikit-learn fits it (float64, C order), kept while the same X comes back:
        the search's fits share one copy; a new X (the refit's) replaces it, old one first."""
        if self._source is not X:
            self._source = self._x64 = None
            self._x64, self._source = np.ascontiguousarray(X, dtype=np.float64), X
        return self._x64

    def release(self) -> None:
        self._source = self._x64 = None

    def estimator(self) -> type:
        """The estimator class fitted (a drop-in with scikit-learn's API may replace it: the
        solver bench's scikit-learn-intelex peer)."""
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression

    def fit(
        self, X: np.ndarray, y: np.ndarray, *, C: float, num_classes: int, init: Fit | None = None
    ) -> Fit:
        from sklearn.exceptions import ConvergenceWarning

        X64 = self.float64(X)
        model = self.estimator()(C=C, solver="lbfgs", max_iter=self.max_iter,
                                 tol=self.tol / len(y))  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X64, y)
        return fit_from_model(model, X64, y, C=C, num_classes=num_classes,
                              iterations=int(np.max(model.n_iter_)), tol=self.tol)  # fmt: skip


def fit_from_model(
    model: Any,
    X: np.ndarray,
    y: np.ndarray,
    *,
    C: float,
    num_classes: int,
    iterations: int,
    tol: float,
    device: str = "cpu",
) -> Fit:
    """A certified `Fit` from any fitted model with sklearn's attributes (sklearn's, cuML's)."""
    coef, intercept = _full_classes(model, num_classes, X.shape[1])
    return certified_fit(X, y, coef=coef, intercept=intercept, C=C, iterations=iterations,
                         tol=tol, device=device)  # fmt: skip


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


def build(*, max_iter: int = MAX_ITER, tol: float = TOL, **options: Any) -> SklearnSolver:
    refuse_removed(options)
    return SklearnSolver(max_iter=max_iter, tol=tol)
