"""cuML's `LogisticRegression` as its source defines it, in numpy and scipy, for CPU tests.

Not cuML (which needs a GPU): a reimplementation of what `fit` computes in the releases
probe supports, read from their source (file and line numbers in docs/solvers.md):
- the objective: a mean loss (softmax for three or more classes, sigmoid for two) plus
  `0.5 * l2 * ||W||^2` on the weights only (`glm_regularizer.cuh`, `Tikhonov`), with
  `l2 = 1 / C` (`_get_qn_params` / `_get_l1_l2_strength`) divided by the sample count when
  `penalty_normalized` (`qn.cuh`: `if (pams.penalty_normalized) { l1 /= X.m; l2 /= X.m; }`);
- the start: zero coefficients and intercepts;
- the stop (`qn_util.cuh`, `check_convergence`): `max |g| <= tol * max(f, tol)` (the
  softmax and logistic losses' `gradNorm` is `nrmMax`), or `|f_(k-10) - f_k| <= delta *
  max(f, tol)` with `delta = tol * 0.01` (`change_tol`, which LogisticRegression never
  sets), or `max_iter` iterations; the L-BFGS memory is `lbfgs_memory`;
- the constructor and `fit` signatures of three releases, copied from their source: 25.10
  (no `penalty_normalized`, no `lbfgs_memory`: QN's defaults True and 5; `fit` converts X to
  float32 unless `convert_dtype=False`), 26.08 (both arguments; `convert_dtype` deprecated)
  and 26.10 (no `convert_dtype`).
The optimiser is scipy's L-BFGS-B with those stopping rules, not cuML's own line search: the
tests check what a mapping makes cuML minimise and when it lets cuML stop, not its path.
"""

from __future__ import annotations

import sys
import types

import numpy as np
from scipy import optimize
from scipy.special import expit, log_expit, logsumexp

PAST = 10  # qn_util.cuh: past = change_tol > 0 ? 10 : 0
QN_MEMORY = 5  # QN's lbfgs_memory default


class _QNReference:
    """The shared fit; subclasses carry one release's signatures."""

    penalty_normalized = True  # QN's default, where the constructor cannot set it
    lbfgs_memory = QN_MEMORY
    last_fit_dtype = None  # the dtype the last fit of this release computed in

    def _fit(self, X, y) -> None:
        type(self).last_fit_dtype = np.asarray(X).dtype
        X = np.asarray(X, dtype=np.float64)
        self.classes_ = np.unique(y)
        labels = np.searchsorted(self.classes_, y)
        n, d = X.shape
        k = 1 if len(self.classes_) == 2 else len(self.classes_)
        l2 = 1.0 / self.C / (n if self.penalty_normalized else 1.0)

        def objective(theta):
            W, b = theta.reshape(k, d + 1)[:, :d], theta.reshape(k, d + 1)[:, d]
            z = X @ W.T + b
            if k == 1:  # sigmoid: log(1 + e^z) - t z
                t = labels[:, None].astype(np.float64)
                loss, r = -log_expit(z) + (1 - t) * z, expit(z) - t
            else:
                lse = logsumexp(z, axis=1)
                loss = lse - z[np.arange(n), labels]
                r = np.exp(z - lse[:, None])
                r[np.arange(n), labels] -= 1.0
            g = np.concatenate([r.T @ X / n + l2 * W, r.mean(0)[:, None]], axis=1)
            return loss.sum() / n + 0.5 * l2 * float((W * W).sum()), g.ravel()

        history: list[float] = []
        tol, delta = self.tol, self.tol * 0.01

        def stop(intermediate_result) -> None:
            f, g = objective(intermediate_result.x)
            history.append(f)
            fmag = max(f, tol)
            if np.abs(g).max() <= tol * fmag:
                raise StopIteration
            if len(history) > PAST and abs(history[-1 - PAST] - f) <= delta * fmag:
                raise StopIteration

        res = optimize.minimize(
            objective, np.zeros(k * (d + 1)), jac=True, method="L-BFGS-B", callback=stop,
            options={"maxiter": self.max_iter, "maxcor": self.lbfgs_memory, "gtol": 0.0,
                     "ftol": 0.0, "maxls": self.linesearch_max_iter},
        )  # fmt: skip
        theta = res.x.reshape(k, d + 1)
        self.coef_, self.intercept_ = theta[:, :d], theta[:, d]
        self.n_iter_ = np.asarray([len(history)])


class LogisticRegression2510(_QNReference):
    """cuML 25.10's signatures (`python/cuml/cuml/linear_model/logistic_regression.py`)."""

    version = "25.10.00"

    def __init__(self, *, penalty="l2", tol=1e-4, C=1.0, fit_intercept=True,
                 class_weight=None, max_iter=1000, linesearch_max_iter=50, verbose=False,
                 l1_ratio=None, solver="qn", handle=None, output_type=None):  # fmt: skip
        self.penalty, self.tol, self.C, self.max_iter = penalty, tol, C, max_iter
        self.linesearch_max_iter = linesearch_max_iter

    def fit(self, X, y, sample_weight=None, *, convert_dtype=True):
        self._fit(np.asarray(X, np.float32) if convert_dtype else X, y)
        return self


class LogisticRegression2608(_QNReference):
    """cuML 26.08's signatures."""

    version = "26.08.00"

    def __init__(self, *, penalty="l2", tol=1e-4, C=1.0, fit_intercept=True,
                 class_weight=None, max_iter=1000, linesearch_max_iter=50, l1_ratio=None,
                 solver="qn", lbfgs_memory=5, penalty_normalized=True, verbose=False,
                 output_type=None):  # fmt: skip
        self.penalty, self.tol, self.C, self.max_iter = penalty, tol, C, max_iter
        self.linesearch_max_iter, self.lbfgs_memory = linesearch_max_iter, lbfgs_memory
        self.penalty_normalized = penalty_normalized

    def fit(self, X, y, sample_weight=None, *, convert_dtype="deprecated"):
        self._fit(X, y)
        return self


class LogisticRegression2610(LogisticRegression2608):
    """cuML 26.10's signatures: the constructor of 26.08, `fit` without `convert_dtype`."""

    version = "26.10.00"

    def fit(self, X, y, sample_weight=None):
        self._fit(X, y)
        return self


RELEASES = {c.version: c for c in (LogisticRegression2510, LogisticRegression2608,
                                   LogisticRegression2610)}  # fmt: skip


def install(monkeypatch, version: str, cls=None) -> type:
    """Put a `cuml` package with this release's LogisticRegression where `import` finds it."""
    cls = cls or RELEASES[version]
    cuml = types.ModuleType("cuml")
    linear_model = types.ModuleType("cuml.linear_model")
    cuml.__version__ = version  # type: ignore[attr-defined]
    linear_model.LogisticRegression = cls  # type: ignore[attr-defined]
    cuml.linear_model = linear_model  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cuml", cuml)
    monkeypatch.setitem(sys.modules, "cuml.linear_model", linear_model)
    return cls
