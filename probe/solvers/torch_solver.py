"""Our own multinomial logistic-regression solver (full-batch L-BFGS in torch, CPU or GPU).

It minimises exactly scikit-learn's objective (0.5 ||W||^2 + C * sum of log-losses,
intercept unregularised) and is checked against it. What makes it fast (SOLVER-NOTES.md):
- features stay resident on the device as float32; matmuls run in float32 while the loss,
  the softmax residuals and all L-BFGS vectors are float64 (pure float32 stalls near the
  optimum; this mix does not);
- warm starts along ascending C, with a stopping rule relative to the starting gradient, so
  a warm start is never "already converged" at a tolerance the new C has not met;
- on GPU, the C values of one search round are fitted together: stacked heads share each
  pass over X, each with its own L-BFGS state (on CPU a pass costs the same FLOPs either way,
  so there heads run one after another, each warm-started from the previous one);
- rows are processed in chunks so the logits buffer stays within `chunk_mb`;
- on GPU, TF32 matmuls for a warm-up phase only; the fit is always finished in float32.
Binary problems: scikit-learn fits one binomial row w (penalty 0.5 ||w||^2); the symmetric
two-row softmax at C/2 has the same decision function, so that is what we fit.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from probe.errors import ProbeError
from probe.solvers.base import Fit, Solver
from probe.solvers.lbfgs import Eval, HeadSpec, Point, drive

log = logging.getLogger(__name__)


@contextlib.contextmanager
def matmul_precision(tf32: bool):
    """TF32 matmuls inside the block (CUDA only); restores the previous setting after."""
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


class _Problem:
    """Training features resident on the device, labels remapped to the classes present."""

    def __init__(self, X: np.ndarray, y: np.ndarray, num_classes: int, device: str) -> None:
        self.source = X  # kept so the cache key (id) cannot be reused by another array
        self.y_source = y
        self.present = np.unique(np.asarray(y))
        if self.present.min() < 0 or self.present.max() >= num_classes:
            raise ProbeError(
                f"labels must lie in 0..{num_classes - 1}; found {self.present.min()}.."
                f"{self.present.max()} (check the dataset's num_classes)"
            )
        remap = np.full(num_classes, -1, dtype=np.int64)
        remap[self.present] = np.arange(len(self.present))
        self.X = torch.from_numpy(_writable_f32(X)).to(device)
        self.y = torch.from_numpy(remap[np.asarray(y, dtype=np.int64)]).to(device)
        self.n, self.dim = self.X.shape
        self.k = len(self.present)
        self.binary = self.k == 2
        self.g0: float | None = None
        self._x64: torch.Tensor | None = None

    def x64(self) -> torch.Tensor:
        """A float64 copy, made only when a head needs the float64 finish."""
        if self._x64 is None:
            self._x64 = self.X.to(torch.float64)
        return self._x64


class TorchSolver(Solver):
    name = "torch"

    def __init__(
        self,
        *,
        device: str = "cpu",
        max_iter: int = 1000,
        tol: float = 1e-5,
        tol_relative: bool = True,
        memory: int = 10,
        stack: str | bool = "auto",
        tf32: str | bool = "auto",
        chunk_mb: int = 1024,
    ) -> None:
        if max_iter <= 0 or tol <= 0 or memory <= 0 or chunk_mb <= 0:
            raise ProbeError(
                f"probe.max_iter={max_iter}, probe.tol={tol}, probe.memory={memory} and "
                f"probe.chunk_mb={chunk_mb} must all be positive"
            )
        self.device = str(device)
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ProbeError(f"probe device={device} but no CUDA GPU is usable; use device=cpu")
        gpu = self.device.startswith("cuda")
        self.max_iter, self.tol, self.memory = max_iter, tol, memory
        self.tol_relative = tol_relative
        self.stack = gpu if stack == "auto" else bool(stack)
        self.tf32 = gpu if tf32 == "auto" else bool(tf32) and gpu
        self.chunk_bytes = chunk_mb * 2**20
        self._problem: _Problem | None = None
        self._eval_rows: tuple[Any, torch.Tensor] | None = None

    # -- data on the device -------------------------------------------------------------
    def problem(self, X: np.ndarray, y: np.ndarray, num_classes: int) -> _Problem:
        p = self._problem
        if p is None or p.source is not X or p.y_source is not y:
            self._problem = p = _Problem(X, y, num_classes, self.device)
        return p

    def _evaluate(self, p: _Problem, thetas: list[Point], *, mode: str = "float32") -> list[Eval]:
        """Mean log-loss and gradient for every head, sharing each chunked pass over X."""
        h, k, d = len(thetas), p.k, p.dim
        mm = torch.float64 if mode == "float64" else torch.float32
        X = p.x64() if mode == "float64" else p.X
        W = torch.cat([t[:, :d] for t in thetas]).to(mm)  # (h*k, d)
        b = torch.cat([t[:, d] for t in thetas])  # float64 (h*k,)
        rows = max(1, min(p.n, self.chunk_bytes // (h * k * 8 * 3)))
        loss = torch.zeros(h, dtype=torch.float64, device=self.device)
        gw = torch.zeros(h * k, d, dtype=torch.float64, device=self.device)
        gb = torch.zeros(h * k, dtype=torch.float64, device=self.device)
        for s in range(0, p.n, rows):
            xc, yc = X[s : s + rows], p.y[s : s + rows]
            logits = (xc @ W.T).to(torch.float64).add_(b).view(len(yc), h, k)
            lse = torch.logsumexp(logits, dim=2)  # (n, h)
            idx = yc.view(-1, 1, 1).expand(-1, h, 1)
            loss += (lse - logits.gather(2, idx).squeeze(2)).sum(0)
            resid = logits.sub_(lse.unsqueeze(2)).exp_()  # softmax, in place
            resid.scatter_add_(2, idx, torch.full_like(idx, -1, dtype=torch.float64))
            resid = resid.view(len(yc), h * k)
            gb += resid.sum(0)
            gw += (resid.to(mm).T @ xc).to(torch.float64)
        out = []
        for j in range(h):
            g = torch.cat([gw[j * k : (j + 1) * k], gb[j * k : (j + 1) * k, None]], 1) / p.n
            out.append((float(loss[j]) / p.n, g))
        return out

    def _gtol(self, p: _Problem) -> float:
        if not self.tol_relative:
            return self.tol
        if p.g0 is None:  # max |gradient| at W=0, b=0 in sklearn's scaling (base.start_gradient)
            zero = torch.zeros(p.k, p.dim + 1, dtype=torch.float64, device=self.device)
            p.g0 = float(self._evaluate(p, [zero])[0][1].abs().max())
        return self.tol * p.g0

    # -- fitting --------------------------------------------------------------------------
    def _start(self, p: _Problem, init: Fit | None) -> Point:
        theta = torch.zeros(p.k, p.dim + 1, dtype=torch.float64)
        if init is not None and init.coef.shape[1] == p.dim:
            theta[:, : p.dim] = torch.from_numpy(np.asarray(init.coef, np.float64)[p.present])
            b = np.asarray(init.intercept, np.float64)[p.present]
            theta[:, p.dim] = torch.from_numpy(np.where(np.isfinite(b), b, 0.0))
            theta[:, p.dim] -= theta[:, p.dim].mean()
        return theta.to(self.device)

    def _solve(self, p: _Problem, Cs: Sequence[float], starts: list[Point]):
        """Precision phases: TF32 warm-up (GPU), float32 matmuls, then float64 only if needed.

        float32 matmuls put a noise floor of about 1e-8 (relative) under the objective; a head
        that stalls there before meeting the gradient rule is finished with float64 matmuls.
        """
        gtol = self._gtol(p)
        scale = 0.5 if p.binary else 1.0  # binomial C == two-row softmax at C/2
        phases = [("tf32", 10.0 * gtol)] if self.tf32 else []
        phases += [("float32", gtol), ("float64", gtol)]
        thetas, iters = list(starts), [0] * len(Cs)
        final: list[Any] = [None] * len(Cs)
        for mode, tol in phases:
            todo = [j for j in range(len(Cs)) if final[j] is None]
            if not todo:
                break
            heads = [
                HeadSpec(1.0 / (Cs[j] * scale * p.n), tol, self.max_iter - iters[j], thetas[j],
                         self.memory)
                for j in todo
            ]  # fmt: skip

            def evaluate(points: list[Point], mode: str = mode) -> list[Eval]:
                return self._evaluate(p, points, mode=mode)

            with matmul_precision(mode == "tf32"):
                if self.stack:
                    out = drive(heads, evaluate)
                else:
                    out = [drive([h], evaluate)[0] for h in heads]
            for j, r in zip(todo, out, strict=True):
                thetas[j], iters[j] = r.theta, iters[j] + r.iterations
                last = mode == "float64"
                if iters[j] >= self.max_iter or (mode != "tf32" and r.grad_max <= gtol) or last:
                    final[j] = r
        return [(r, n) for r, n in zip(final, iters, strict=True)]

    def _to_fit(self, p: _Problem, result: Any, iterations: int, C: float, num_classes: int):
        theta = result.theta.cpu().numpy()
        coef = np.zeros((num_classes, p.dim))
        intercept = np.full(num_classes, -np.inf)
        coef[p.present] = theta[:, : p.dim]
        intercept[p.present] = theta[:, p.dim]
        obj = 0.5 * float((theta[:, : p.dim] ** 2).sum()) + C * p.n * result.loss
        return Fit(coef=coef, intercept=intercept, iterations=int(iterations),
                   converged=bool(result.converged and iterations <= self.max_iter),
                   objective=obj, C=float(C))  # fmt: skip

    def fit(
        self, X: np.ndarray, y: np.ndarray, *, C: float, num_classes: int, init: Fit | None = None
    ) -> Fit:
        return self.fit_many(X, y, Cs=[C], num_classes=num_classes, inits=[init])[0]

    def fit_many(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        Cs: Sequence[float],
        num_classes: int,
        inits: Sequence[Fit | None] | None = None,
    ) -> list[Fit]:
        """Stacked on GPU; on CPU one by one, each warm-started from the closest smaller C."""
        p = self.problem(X, y, num_classes)
        inits = list(inits or [None] * len(Cs))
        with _threads_for(p, self.device):
            return self._fit_many(p, Cs, num_classes, inits)

    def _fit_many(self, p: _Problem, Cs: Sequence[float], num_classes: int, inits: list) -> list:
        if self.stack:
            results = self._solve(p, Cs, [self._start(p, i) for i in inits])
            pairs = zip(results, Cs, strict=True)
            return [self._to_fit(p, r, n, C, num_classes) for (r, n), C in pairs]
        fits: list[Fit] = []
        for C, init in sorted(zip(Cs, inits, strict=True), key=lambda t: t[0]):
            init = _closest_below(C, [init, *fits])
            (r, n), = self._solve(p, [C], [self._start(p, init)])  # fmt: skip
            fits.append(self._to_fit(p, r, n, C, num_classes))
        by_c = {f.C: f for f in fits}
        return [by_c[float(C)] for C in Cs]

    def predict(self, fit: Fit, X: np.ndarray, *, chunk: int = 65536) -> np.ndarray:
        """Argmax scores on the device, in row chunks (X may be a memory map)."""
        W = torch.from_numpy(np.asarray(fit.coef, np.float32)).to(self.device)
        b = torch.from_numpy(np.asarray(fit.intercept, np.float32)).to(self.device)
        out = np.empty(len(X), dtype=np.int64)
        for s in range(0, len(X), chunk):
            xb = torch.from_numpy(_writable_f32(X[s : s + chunk]))
            out[s : s + chunk] = (xb.to(self.device) @ W.T + b).argmax(1).cpu().numpy()
        return out


def _writable_f32(X: np.ndarray) -> np.ndarray:
    """float32, C-contiguous and writable (torch refuses to wrap read-only memory maps)."""
    arr = np.ascontiguousarray(X, dtype=np.float32)
    return arr if arr.flags.writeable else arr.copy()


@contextlib.contextmanager
def _threads_for(p: _Problem, device: str):
    """Tiny CPU problems are bound by per-op overhead, where one thread beats several."""
    old = torch.get_num_threads()
    tiny = device == "cpu" and p.n * p.dim * p.k < 2**24
    if tiny:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if tiny:
            torch.set_num_threads(old)


def _closest_below(C: float, candidates: Sequence[Fit | None]) -> Fit | None:
    """The warm start with the largest C not above this one (any start if none has a C)."""
    known = [f for f in candidates if f is not None and f.C is not None and f.C <= C]
    if known:
        return max(known, key=lambda f: f.C)
    return next((f for f in candidates if f is not None and f.C is None), None)


def build(*, name: str = "torch", **options: Any) -> TorchSolver:
    """The config's keys are TorchSolver's options one to one (`name` only labels the config)."""
    return TorchSolver(**options)
