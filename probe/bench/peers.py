"""The solvers our users would pick instead of ours, behind the bench's solver interface.

Each peer fits scikit-learn's objective (0.5 ||W||^2 + C sum loss, intercept unregularised)
from a cold start at every C, as the `sklearn` backend does, on the same float64 features,
and every fit is judged by our float64 certificate (`probe.solvers.base.certify`), whatever
the peer reported about itself. None is a dependency: `pip install -e ".[bench]"`.

- **sklearnex** (scikit-learn-intelex 2026.2.0, as dinov3's `log_regression.py` patches
  scikit-learn, lines 47-51, on float64 features, line 74): its `LogisticRegression` keeps
  scikit-learn's mean-loss scaling (`daal4py/sklearn/linear_model/logistic_path.py`, line
  224 `sw_sum = len(X)`, line 352 `1.0 / (2 * C * C_daal_multiplier * sw_sum)`) and
  scipy's L-BFGS-B with `gtol = tol` (lines 367-380), so our sklearn backend's mapping
  `tol = probe.tol / N` holds unchanged. What it accelerates: oneDAL computes the loss and
  gradient (`_daal4py_loss_and_grad`, lines 319 and 334) in X's dtype (float64 and float32
  accepted from scikit-learn 1.9, lines 170-176); the L-BFGS vectors stay float64 (line 205).
  Only `lbfgs` is dispatched (`newton-cg` in preview mode only, lines 936-941); it keeps 50
  correction pairs instead of scikit-learn's 10 (`"maxcor": 50`, line 375).
- **cyanure** (1.2.2, as iBOT's and MSN's logistic evaluations use it): `Classifier(loss=
  "multiclass-logistic", penalty="l2", fit_intercept=True)`: the loss, the penalty
  `lambda_1 / 2 ||W||^2` and the unregularised intercept are in `cyanure/estimators.py`,
  lines 116-181; that the loss is averaged over rows is not written there, and is checked
  instead: at `lambda_1 = 1 / (C N)` its fits reach scikit-learn's objective (to 1e-7 in
  `tests/test_solvers_bench.py`). Its `tol` is a relative duality gap, `f - f* <= tol f`
  (lines 210-216), not a gradient rule: we run it at `CYANURE_TOL` and report how far from
  the paper's rule each fit stops. Its `n_iter_` counts epochs of its incremental solver
  (lines 218-220): the bench's passes for it.
- **cuml** is our own `probe=cuml` backend (`probe.solvers.cuml`): GPU only.
"""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace
from typing import Any

import numpy as np

from probe.solvers.base import Fit
from probe.solvers.sklearn import SklearnSolver, fit_from_model

PEERS = ("sklearnex", "cyanure", "cuml")
CPU_PEERS = ("sklearnex", "cyanure")
INSTALL = {
    "sklearnex": 'pip install -e ".[bench]" (scikit-learn-intelex)',
    "cyanure": 'pip install -e ".[bench]" (cyanure)',
    "cuml": 'pip install -e ".[cuml-cu13]" on a machine with a CUDA GPU',
}
# The duality gap cyanure runs at: the tightest that finishes a search in reasonable time
# here. Measured on `fine`'s search rows (5,333 x 768 x 100, float64, one fit each): C = 1e4
# took 165 epochs and 58.3 s to stop at max |gradient| 3.0e-3 with tol 1e-3, 235 epochs and
# 87.3 s to stop at 2.7e-5 (within the paper's rule) with 1e-6; with 1e-12 its C = 1 and
# C = 100 fits took 9.9 s and 35.1 s (30 and 90 epochs, 8.5e-5 and 1.6e-6), C = 1e-6 9.9 s,
# stopping at 3.4e-4. Given float32 X, C = 1e4 stalled at 125 epochs, 7.8e-2 and an
# objective 2% above the float64 fit's, whatever the tol: float64 it is (docs/solvers.md)
CYANURE_TOL = 1e-6


def unavailable(name: str, *, gpu: bool) -> str | None:
    """Why peer `name` cannot run here, with the install command; None when it can."""
    if name == "cuml" and not gpu:
        return f"no CUDA GPU here (cuML runs only on one: {INSTALL['cuml']})"
    if importlib.util.find_spec(name) is None:  # each peer imports under its own name
        return f"not installed: {INSTALL[name]}"
    return None


class SklearnexSolver(SklearnSolver):
    """scikit-learn's `LogisticRegression` as scikit-learn-intelex patches it."""

    name = "sklearnex"

    def estimator(self) -> type:
        from sklearnex.linear_model import LogisticRegression

        return LogisticRegression


class CyanureSolver(SklearnSolver):
    """cyanure's multinomial (binomial for two classes) logistic regression, one cold fit per C.

    Shares the `sklearn` backend's float64 copy of X (cyanure fits X's dtype)."""

    name = "cyanure"

    def __init__(self, *, tol: float = CYANURE_TOL, threads: int = -1, **options: Any) -> None:
        super().__init__(**options)
        self.gap, self.threads, self.epochs = tol, threads, 0

    def fit(
        self, X: np.ndarray, y: np.ndarray, *, C: float, num_classes: int, init: Fit | None = None
    ) -> Fit:
        from cyanure.estimators import Classifier

        X64 = self.float64(X)
        binary = len(np.unique(y)) == 2
        model = Classifier(loss="logistic" if binary else "multiclass-logistic", penalty="l2",
                           lambda_1=1.0 / (C * len(y)), fit_intercept=True, tol=self.gap,
                           max_iter=self.max_iter, verbose=False,
                           n_threads=self.threads)  # fmt: skip
        model.fit(X64, y)
        epochs = int(np.max(model.n_iter_))
        self.epochs += epochs
        return fit_from_model(as_sklearn(model, binary=binary), X64, y, C=C,
                              num_classes=num_classes, iterations=epochs,
                              tol=self.tol)  # fmt: skip


def as_sklearn(model: Any, *, binary: bool) -> SimpleNamespace:
    """cyanure's weights in scikit-learn's attribute shapes: coef_ (classes, D), or (1, D)
    for a binary problem, whose weights are those of the second class against the first."""
    coef = np.asarray(model.coef_, np.float64)
    intercept = np.asarray(model.intercept_, np.float64).ravel()
    coef = coef.reshape(1, -1) if binary else coef.T
    return SimpleNamespace(classes_=np.asarray(model.classes_), coef_=coef, intercept_=intercept)


def make(name: str) -> SklearnSolver:
    """A CPU peer by name (cuML is the bench's own `cuml` backend)."""
    return {"sklearnex": SklearnexSolver, "cyanure": CyanureSolver}[name]()
