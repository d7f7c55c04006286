"""The solver interface the protocol drives, the objective every backend minimises, and the
one convergence certificate every backend's `converged` comes from.

Every backend minimises scikit-learn's objective
    0.5 * ||W||^2 + C * sum_i logloss(x_i W^T + b, y_i)      (b unregularised),
multinomial for three or more classes and binomial (one row w, sigmoid loss) for two, so
results from different backends are comparable C for C.

Convergence is the CLIP paper's rule (docs/protocol.md, Convergence): the paper ran
scikit-learn 0.2x, i.e. scipy's L-BFGS-B with `pgtol = tol = 1e-4` on the gradient of the
*sum-scaled* objective `sum loss + ||W||^2 / (2C)` (= the objective above / C). A fit is
converged when, at the point it returns, `max |gradient|` of that objective over weights and
intercepts is at most `tol` (default 1e-4), checked here in float64 by `certify`, whatever
the backend reported about itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from probe.core.errors import ProbeError

TOL = 1e-4  # the paper's pgtol, on the gradient of sum loss + ||W||^2 / (2C)
MAX_ITER = 1000
CHUNK_BYTES = 2**27  # float64 rows (plus their logits) one certificate chunk may take
# On CPU a chunk's buffers are kept near cache size instead: at 40,000 x 1024 x 100, float32
# passes took 79 against 95 ms, float64 passes 137 against 225 ms and a certificate 138
# against 213 ms with 16 MiB chunks (docs/solvers.md); a GPU wants large chunks
CPU_CHUNK_BYTES = 2**24
ROWS = 65536  # the most rows of any chunk (resident.ROWS)


def chunk_rows(n: int, per_row: int, *, chunk_bytes: int, device: str) -> int:
    """Rows per chunk for buffers of `per_row` bytes a row, within `chunk_bytes` (and
    within CPU_CHUNK_BYTES on CPU)."""
    if not str(device).startswith("cuda"):
        chunk_bytes = min(chunk_bytes, CPU_CHUNK_BYTES)
    return max(1, min(n, ROWS, chunk_bytes // per_row))


@dataclass
class Fit:
    """A fitted multinomial head: scores = X @ coef.T + intercept."""

    coef: np.ndarray  # (K, D)
    intercept: np.ndarray  # (K,)
    iterations: int
    converged: bool
    objective: float | None = None
    C: float | None = None  # the C it was fitted at; None for a start that was never fitted
    grad_max: float | None = None  # the certificate's max |gradient| (see `certify`)


@dataclass(frozen=True)
class Certificate:
    objective: float  # scikit-learn's: 0.5 ||W||^2 + C sum loss (binomial for two classes)
    grad_max: float  # max |grad of (sum loss + ||W||^2 / (2C))|, weights and intercepts


def check_budget(*, max_iter: int, tol: float) -> None:
    if not (max_iter > 0 and tol > 0 and math.isfinite(tol)):
        raise ProbeError(
            f"probe.max_iter={max_iter} and probe.tol={tol} must be positive "
            f"(the protocol's: max_iter={MAX_ITER}, tol={TOL})"
        )


def refuse_removed(options: dict) -> None:
    """`probe.tol_relative` is gone: say so instead of silently ignoring it."""
    if "tol_relative" in options:
        raise ProbeError(
            f"probe.tol_relative={options['tol_relative']} was removed: probe.tol is now the "
            f"paper's absolute rule, max |gradient| of sum loss + ||W||^2/(2C) <= tol "
            f"(default {TOL}); for a tighter solve set a smaller probe.tol, e.g. probe.tol=1e-6"
        )


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

    def release(self) -> None:
        """Drop whatever the backend keeps between fits (its copy of the features)."""

    def predict(self, fit: Fit, X: np.ndarray, *, chunk: int = 65536) -> np.ndarray:
        """Class predictions, in row chunks so a memory-mapped X is never loaded whole."""
        out = np.empty(len(X), dtype=np.int64)
        for s in range(0, len(X), chunk):
            xb = np.asarray(X[s : s + chunk], dtype=np.float32)
            out[s : s + chunk] = np.argmax(xb @ fit.coef.T.astype(np.float32) + fit.intercept, 1)
        return out


def certified_fit(
    X: np.ndarray | torch.Tensor,
    y: np.ndarray,
    *,
    coef: np.ndarray,
    intercept: np.ndarray,
    C: float,
    iterations: int,
    tol: float,
    device: str = "cpu",
    cert: Certificate | None = None,
) -> Fit:
    """The `Fit` every backend returns: objective and convergence from `certify` (`cert`:
    a certificate the backend already computed at exactly this point)."""
    cert = cert or certify(X, y, coef, intercept, C, device=device)
    return Fit(coef=coef, intercept=intercept, iterations=int(iterations),
               converged=bool(cert.grad_max <= tol), objective=cert.objective, C=float(C),
               grad_max=cert.grad_max)  # fmt: skip


def certify(
    X: np.ndarray | torch.Tensor,
    y: np.ndarray,
    coef: np.ndarray,
    intercept: np.ndarray,
    C: float,
    *,
    device: str = "cpu",
) -> Certificate:
    """Objective and max |gradient| at (coef, intercept), in float64, in row chunks.

    The classes are those present in y (absent ones have intercept -inf and no say). With two,
    the head is read in scikit-learn's binomial form: w = coef[1] - coef[0] and
    b = intercept[1] - intercept[0] with a sigmoid loss and penalty 0.5 ||w||^2; the
    symmetric two-row softmax our torch solver fits has exactly this decision function. Only
    chunks of X are ever converted to float64 (X may be a memory map or a device tensor).
    """
    y = np.asarray(y)
    present = np.unique(y)
    W = torch.from_numpy(np.asarray(coef, np.float64)[present]).to(device)
    b = torch.from_numpy(np.asarray(intercept, np.float64)[present]).to(device)
    labels = torch.from_numpy(np.searchsorted(present, y)).to(device)
    binary = len(present) == 2
    if binary:
        W, b = (W[1] - W[0])[None], (b[1] - b[0])[None]
    n, d = len(y), W.shape[1]
    rows = chunk_rows(n, 8 * (d + 2 * len(W)), chunk_bytes=CHUNK_BYTES, device=device)
    loss = torch.zeros((), dtype=torch.float64, device=device)
    gW, gb = torch.zeros_like(W), torch.zeros_like(b)
    for s in range(0, n, rows):
        xc = _rows64(X, s, s + rows, device)
        z = xc @ W.T + b
        yc = labels[s : s + rows]
        if binary:  # log(1 + e^z) - t z, exactly (softplus's threshold would round it)
            t = yc.to(torch.float64)[:, None]
            loss += (torch.logaddexp(torch.zeros_like(z), z) - t * z).sum()
            r = torch.sigmoid(z) - t
        else:
            lse = torch.logsumexp(z, 1)
            loss += (lse - z.gather(1, yc[:, None])[:, 0]).sum()
            r = torch.exp(z - lse[:, None])
            r[torch.arange(len(yc), device=device), yc] -= 1.0
        gW += r.T @ xc
        gb += r.sum(0)
    gW += W / C
    sq = float((W * W).sum())
    grad_max = float(torch.cat([gW.flatten(), gb]).abs().max())  # NaN stays NaN: not converged
    return Certificate(objective=0.5 * sq + C * float(loss), grad_max=grad_max)


def objective(X: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: np.ndarray, C: float):
    """scikit-learn's objective in float64 (binomial for two classes); see `certify`."""
    return certify(X, y, coef, intercept, C).objective


def _rows64(X: np.ndarray | torch.Tensor, start: int, stop: int, device: str) -> torch.Tensor:
    if isinstance(X, torch.Tensor):
        return X[start:stop].to(device=device, dtype=torch.float64)
    return torch.from_numpy(np.asarray(X[start:stop], dtype=np.float64)).to(device)
