"""The solver interface the protocol drives, and the objective every backend minimises.

Every backend minimises scikit-learn's multinomial objective
    0.5 * ||W||^2 + C * sum_i logloss(x_i W^T + b, y_i)      (b unregularised),
so results from different backends are comparable C for C.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Fit:
    """A fitted multinomial head: scores = X @ coef.T + intercept."""

    coef: np.ndarray  # (K, D)
    intercept: np.ndarray  # (K,)
    iterations: int
    converged: bool
    objective: float | None = None
    C: float | None = None  # the C it was fitted at (lets a backend pick warm starts)


class Solver:
    """Base backend. Subclasses implement `fit`; `fit_many` may fit several C values together."""

    name = "base"

    def fit(
        self, X: np.ndarray, y: np.ndarray, *, C: float, num_classes: int, init: Fit | None = None
    ) -> Fit:
        raise NotImplementedError

    def fit_many(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        Cs: Sequence[float],
        num_classes: int,
        inits: Sequence[Fit | None] | None = None,
    ) -> list[Fit]:
        """Fit one head per C (ascending). `inits` are warm starts a backend may use."""
        inits = inits or [None] * len(Cs)
        return [
            self.fit(X, y, C=C, num_classes=num_classes, init=init)
            for C, init in zip(Cs, inits, strict=True)
        ]

    def predict(self, fit: Fit, X: np.ndarray, *, chunk: int = 65536) -> np.ndarray:
        """Class predictions, in row chunks so a memory-mapped X is never loaded whole."""
        out = np.empty(len(X), dtype=np.int64)
        for s in range(0, len(X), chunk):
            xb = np.asarray(X[s : s + chunk], dtype=np.float32)
            out[s : s + chunk] = np.argmax(xb @ fit.coef.T.astype(np.float32) + fit.intercept, 1)
        return out


def objective(X: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: np.ndarray, C: float):
    """scikit-learn's objective in float64: 0.5 ||W||^2 + C * sum of log-losses."""
    X = np.asarray(X, dtype=np.float64)
    logits = X @ np.asarray(coef, np.float64).T + np.asarray(intercept, np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    logz = np.log(np.exp(logits).sum(axis=1))
    loss = float((logz - logits[np.arange(len(y)), y]).sum())
    return 0.5 * float((np.asarray(coef, np.float64) ** 2).sum()) + C * loss


def start_gradient(X: np.ndarray, y: np.ndarray, num_classes: int) -> float:
    """Max-abs gradient of sklearn's sample-averaged loss at W=0, b=0.

    A stopping tolerance relative to this is what makes different solvers stop at the same
    point (see the README's note on convergence): sklearn's absolute tolerance does not.
    """
    n = len(y)
    onehot = np.zeros((n, num_classes))
    onehot[np.arange(n), y] = 1.0
    resid = (1.0 / num_classes) - onehot  # (N, K)
    g_w = np.asarray(X, np.float64).T @ resid / n
    g_b = resid.mean(axis=0)
    return float(max(np.abs(g_w).max(), np.abs(g_b).max()))
