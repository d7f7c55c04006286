"""Our own multinomial logistic-regression solver (full-batch L-BFGS in torch, CPU or GPU).

It minimises exactly scikit-learn's objective (0.5 ||W||^2 + C * sum of log-losses,
intercept unregularised) and is checked against it. A fit is done when the CLIP paper's
gradient rule holds (`base`: max |grad of sum loss + ||W||^2/(2C)| <= tol, default 1e-4),
certified in float64 on the source features at the end of each fit: float32 sums over a
million rows cannot resolve 1e-4, so a float32 fit that fails the certificate is finished
with float64 matmuls. What makes it fast (docs/solvers.md):
- it works in the features' centred principal-axis basis (`resident.Resident`) with a
  diagonal scaling set from each head's current softmax curvature (`track.Track`): exact
  changes of variables under which L-BFGS needs 2 to 4 times fewer passes than on the raw
  features;
- features stay resident on the device as float32; matmuls run in float32 while the loss,
  the softmax residuals and all L-BFGS vectors are float64. Each head's logits are cached in
  float64 and only the step is multiplied in float32, so rounding scales with the step:
  the float32 phase reaches the gradient rule instead of stalling (a float64 finish remains
  for problems whose logits do not fit `CACHE_BYTES`);
- warm starts along ascending C (a start that already meets the rule at the new C is a
  converged fit after 0 iterations, as it would be for scipy);
- on GPU, the C values of one search round are fitted together: stacked heads share each
  pass over X, each with its own L-BFGS state (on CPU a pass costs the same FLOPs either way,
  so there heads run one after another, each warm-started from the previous one);
- rows are processed in chunks so the logits buffer stays within `chunk_mb`;
- on GPU, TF32 matmuls for a warm-up phase only; a fit ends in float32 or float64.
Binary problems: scikit-learn fits one binomial row w (penalty 0.5 ||w||^2); the symmetric
two-row softmax at C/2 has the same decision function, so that is what we fit.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from probe.core.errors import ProbeError
from probe.core.rows import Rows
from probe.solvers import passes
from probe.solvers.base import (
    MAX_ITER,
    TOL,
    Certificate,
    Fit,
    Solver,
    certified_fit,
    certify,
    check_budget,
    refuse_removed,
)
from probe.solvers.lbfgs import Eval, HeadSpec, Point, drive
from probe.solvers.resident import Problem, Resident, device_block
from probe.solvers.track import Track

log = logging.getLogger(__name__)
# relative rounding noise of the mean log-loss by matmul precision (see lbfgs.HeadSpec.noise);
# with cached logits only the step is rounded, so float32 resolves far smaller decreases
NOISE = {"tf32": 1e-5, "float32": 1e-8, "float64": 0.0}
NOISE_CACHED = {"tf32": 1e-5, "float32": 1e-12, "float64": 0.0}
SEGMENT = 5  # iterations between checks of a head's scaling


@contextlib.contextmanager
def matmul_precision(tf32: bool):
    """TF32 matmuls inside the block (CUDA only); restores the previous setting after."""
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


class TorchSolver(Solver):
    name = "torch"

    def __init__(
        self,
        *,
        device: str = "cpu",
        max_iter: int = MAX_ITER,
        tol: float = TOL,
        memory: int = 10,
        stack: str | bool = "auto",
        tf32: str | bool = "auto",
        chunk_mb: int = 1024,
    ) -> None:
        check_budget(max_iter=max_iter, tol=tol)
        if memory <= 0 or chunk_mb <= 0:
            raise ProbeError(
                f"probe.memory={memory} and probe.chunk_mb={chunk_mb} must both be positive"
            )
        self.device = str(device)
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ProbeError(f"probe device={device} but no CUDA GPU is usable; use device=cpu")
        gpu = self.device.startswith("cuda")
        self.max_iter, self.tol, self.memory = max_iter, tol, memory
        self.stack = gpu if stack == "auto" else bool(stack)
        self.tf32 = gpu if tf32 == "auto" else bool(tf32) and gpu
        self.chunk_bytes = chunk_mb * 2**20
        self._resident: Resident | None = None
        self._problem: Problem | None = None
        self.counter = passes.Counter()

    # -- data on the device -------------------------------------------------------------
    def problem(self, X: np.ndarray | Rows, y: np.ndarray, num_classes: int) -> Problem:
        """The fit rows on the device, reused while the same arrays come back.

        A selection that is the first rows of a larger one (`Rows.head`: the search's train
        rows within train + val) gets the larger one's copy, so the refit needs no second;
        any other new X replaces the copy (the old one is released first)."""
        root, n = X.origin if isinstance(X, Rows) and X.origin else (X, len(X))
        p = self._problem
        if p is not None and p.resident.source is root and p.n == n and p.y_source is y:
            return p
        self._problem = None
        if self._resident is None or self._resident.source is not root:
            self._resident = None  # one copy alive at a time
            self._resident = Resident(root, self.device, n_basis=n)
        self._problem = p = Problem(self._resident, n, y, num_classes)
        return p

    def release(self) -> None:
        """Drop the resident features (the caller is done fitting)."""
        self._resident = self._problem = None

    def _evaluate(
        self,
        p: Problem,
        thetas: list[Point],
        *,
        mode: str = "float32",
        scales: list[torch.Tensor] | None = None,
        states: list[dict] | None = None,
    ) -> list[Eval]:
        """Mean log-loss and gradient for every head, sharing each chunked pass over X
        (`passes.evaluate`)."""
        return passes.evaluate(p, thetas, mode=mode, scales=scales, states=states,
                               chunk_bytes=self.chunk_bytes, counter=self.counter)  # fmt: skip

    def _certifier(self, p: Problem, C: float) -> Callable[[Point], Certificate]:
        """`base.certify` at a point in the working basis, on the resident rows (an exact
        float32 copy of the source, converted to float64 chunk by chunk)."""

        def at(theta: Point) -> Certificate:
            start = time.perf_counter()
            w, b = (t.cpu().numpy() for t in p.from_work(theta))
            cert = certify(p.X, p.labels, w, b, C, device=self.device)
            self.counter.add("certificate", heads=1, seconds=time.perf_counter() - start)
            return cert

        return at

    # -- fitting --------------------------------------------------------------------------
    def _start(self, p: Problem, init: Fit | None) -> Point:
        """The warm start in the working basis (unscaled: `_solve` divides by the scales)."""
        if init is None or init.coef.shape[1] != p.dim:
            return torch.zeros(p.k, p.dim + 1, dtype=torch.float64, device=self.device)
        coef = torch.from_numpy(np.asarray(init.coef, np.float64)[p.present])
        b = np.asarray(init.intercept, np.float64)[p.present]
        b = torch.from_numpy(np.where(np.isfinite(b), b, 0.0))
        return p.to_work(coef.to(self.device), (b - b.mean()).to(self.device))

    def _path_start(self, p: Problem, C: float, init: Fit | None, fits: Sequence[Fit]) -> Point:
        """The start for C from `init`, fitted at a smaller C_b. When a fit at a still smaller
        C_a is known too, the regularisation path extrapolated linearly in log C,
        theta_b + t (theta_b - theta_a) with t = log(C / C_b) / log(C_b / C_a), is taken
        instead if its objective at C is lower (one pass evaluates both): in the first
        round's ascending C it usually lands closer to the new optimum, but overshoots where
        the path has flattened (docs/solvers.md)."""
        start = self._start(p, init)
        if init is None or init.C is None or init.C >= C:
            return start
        below = [f for f in fits if f.C is not None and f.C < init.C]
        if not below:
            return start
        a = max(below, key=lambda f: f.C)
        t = math.log(C / init.C) / math.log(init.C / a.C)
        guess = start + t * (start - self._start(p, a))
        reg = 0.5 / (C * (0.5 if p.binary else 1.0) * p.n)  # binomial C: two rows at C/2
        f_guess, f_start = (loss + reg * float(th[:, :-1].square().sum())
                            for th, (loss, _) in zip((guess, start),
                                                     self._evaluate(p, [guess, start]),
                                                     strict=True))  # fmt: skip
        return guess if f_guess < f_start else start

    def _solve(self, p: Problem, Cs: Sequence[float], starts: list[Point]):
        """Precision phases: TF32 warm-up (GPU), float32 matmuls, then float64 only if needed.

        float32 matmuls put a noise floor under the objective; a head that stalls there
        before meeting the gradient rule is finished with float64 matmuls, keeping its
        L-BFGS memory. Within a phase, heads run in segments of SEGMENT iterations; between
        segments a head whose softmax curvature moved by more than 2x since its scaling was
        set is rescaled (an exact diagonal change of variables: memory and point carry over).
        """
        gtol = self.tol / p.n  # the rule on the mean-scaled gradient the heads see
        half = 0.5 if p.binary else 1.0  # binomial C == two-row softmax at C/2
        tracks = [Track(p, C, 1.0 / (C * half * p.n), t) for C, t in zip(Cs, starts, strict=True)]
        phases = [("tf32", 10.0 * gtol)] if self.tf32 else []
        for mode, tol in [*phases, ("float32", gtol), ("float64", gtol)]:
            live = [t for t in tracks if t.final is None]
            for t in live:
                t.enter_phase()
            cached = passes.caches_logits(p, heads=len(live), mode=mode)
            noise = (NOISE_CACHED if cached else NOISE)[mode]
            while live:
                specs = [t.spec(tol=tol, noise=noise, budget=min(SEGMENT, self.max_iter
                         - t.iters), memory=self.memory, mode=mode) for t in live]  # fmt: skip

                def evaluate(points: list[Point], specs: list[HeadSpec], mode: str = mode):
                    return self._evaluate(p, points, mode=mode, scales=[h.scale for h in specs],
                                          states=[h.state for h in specs])  # fmt: skip

                with matmul_precision(mode == "tf32"):
                    out = drive(specs, evaluate) if self.stack else [
                        drive([h], evaluate)[0] for h in specs]  # fmt: skip
                go_on = [t.absorb(r, h, gtol=gtol, tol=self.tol, mode=mode,
                                  max_iter=self.max_iter, certify=self._certifier(p, t.C))
                         for t, h, r in zip(live, specs, out, strict=True)]  # fmt: skip
                live = [t for t, more in zip(live, go_on, strict=True) if more]
        return tracks

    def _to_fit(self, p: Problem, track: Track, num_classes: int) -> Fit:
        """The certified Fit (the certificate taken when the fit ended, or taken now)."""
        w, b = (t.cpu().numpy() for t in p.from_work(track.final.theta))
        coef = np.zeros((num_classes, p.dim))
        intercept = np.full(num_classes, -np.inf)
        coef[p.present] = w
        intercept[p.present] = b
        return certified_fit(p.X, p.y_source, coef=coef, intercept=intercept,
                             C=track.C, iterations=track.iters, tol=self.tol, device=self.device,
                             cert=track.cert)  # fmt: skip

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
        """Stacked on GPU; on CPU one by one in ascending C, each warm-started from the
        closest smaller C (or the path extrapolated from the two closest, `_path_start`)."""
        p = self.problem(X, y, num_classes)
        inits = list(inits or [None] * len(Cs))
        with _threads_for(p, self.device):
            return self._fit_many(p, Cs, num_classes, inits)

    def _fit_many(self, p: Problem, Cs: Sequence[float], num_classes: int, inits: list) -> list:
        if self.stack:
            tracks = self._solve(p, Cs, [self._start(p, i) for i in inits])
            return [self._to_fit(p, t, num_classes) for t in tracks]
        fits: list[Fit] = []
        for C, init in sorted(zip(Cs, inits, strict=True), key=lambda t: t[0]):
            init = _closest_below(C, init, fits)
            start = self._path_start(p, C, init, fits)
            (track,) = self._solve(p, [C], [start])
            fits.append(self._to_fit(p, track, num_classes))
            del track  # its N x K logit cache must not live on into the next C's fit
        by_c = {f.C: f for f in fits}
        return [by_c[float(C)] for C in Cs]

    def predict(self, fit: Fit, X: np.ndarray, *, chunk: int = 65536) -> np.ndarray:
        """Argmax scores on the device, in row chunks (X may be a memory map)."""
        W = torch.from_numpy(np.asarray(fit.coef, np.float32)).to(self.device)
        b = torch.from_numpy(np.asarray(fit.intercept, np.float32)).to(self.device)
        out = np.empty(len(X), dtype=np.int64)
        for s in range(0, len(X), chunk):
            xb = device_block(X, s, s + chunk, self.device)
            out[s : s + chunk] = (xb @ W.T + b).argmax(1).cpu().numpy()
        return out


@contextlib.contextmanager
def _threads_for(p: Problem, device: str):
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


def _closest_below(C: float, init: Fit | None, fits: Sequence[Fit]) -> Fit | None:
    """The warm start for C: the protocol's own if it was made for this C (an interpolation
    between fitted neighbours carries no C), else the fit with the largest C not above it
    among the protocol's start and this round's earlier fits."""
    if init is not None and init.C is None:
        return init
    known = [f for f in (init, *fits) if f is not None and f.C is not None and f.C <= C]
    return max(known, key=lambda f: f.C) if known else None


def build(*, name: str = "torch", normalize: str = "none", **options: Any) -> TorchSolver:
    """The config's keys are TorchSolver's options one to one (`name` only labels the config;
    `normalize` is applied to the features by the pipeline, before any solver sees them)."""
    refuse_removed(options)
    return TorchSolver(**options)
