"""L-BFGS written as a generator, so several heads can share one pass over the features.

Each head is a generator that yields the point it wants evaluated next and receives
`(loss, grad)` of the sample-averaged log-loss there; it adds the L2 term itself. `drive`
runs any number of heads in lock-step: every round it evaluates all pending points together
(one pass over X for all of them), then hands each head its own result. A head alone is plain
sequential L-BFGS; heads together keep fully separate L-BFGS states and line searches (one
shared L-BFGS over all heads converges far worse, see SOLVER-NOTES).

The objective per head is scikit-learn's, scaled by 1/(C N) (same minimiser):
    f(W, b) = mean_i logloss_i + ||W||^2 / (2 C N)      (b unregularised)
and the stopping rule is scipy's as sklearn calls it: max |grad f| <= gtol, or a relative
decrease of f below 64 machine epsilons.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import torch

FTOL = 64 * 2.220446049250313e-16  # scipy's ftol as scikit-learn sets it
C1, C2 = 1e-4, 0.9  # weak Wolfe constants
MAX_LINESEARCH = 25

Point = torch.Tensor  # (K, D+1) float64: coef | intercept
Eval = tuple[float, torch.Tensor]  # (mean log-loss, its gradient (K, D+1) float64)


@dataclass
class HeadResult:
    theta: Point
    iterations: int
    converged: bool
    loss: float  # mean log-loss at theta
    grad_max: float  # max |grad f| at theta


@dataclass
class HeadSpec:
    """One head to fit: its scaled regularisation, stopping rule and start point."""

    reg: float  # 1 / (C N)
    gtol: float
    max_iter: int
    theta0: Point
    memory: int = 10


def _objective(spec: HeadSpec, theta: Point, ev: Eval) -> tuple[float, torch.Tensor]:
    """Adds the L2 term (coef only, never the intercept) to the mean log-loss."""
    loss, grad = ev
    coef = theta[:, :-1]
    f = loss + 0.5 * spec.reg * float((coef * coef).sum())
    g = grad.clone()
    g[:, :-1] += spec.reg * coef
    return f, g


def _direction(g: torch.Tensor, mem: list[tuple[torch.Tensor, torch.Tensor, float]]):
    """The two-loop recursion: -H g with H the L-BFGS inverse-Hessian estimate."""
    q = g.clone()
    alphas = []
    for s, y, rho in reversed(mem):
        a = rho * float((s * q).sum())
        q -= a * y
        alphas.append(a)
    if mem:
        s, y, _ = mem[-1]
        q *= float((s * y).sum()) / float((y * y).sum())
    for (s, y, rho), a in zip(mem, reversed(alphas), strict=True):
        b = rho * float((y * q).sum())
        q += (a - b) * s
    return -q


def head(spec: HeadSpec) -> Generator[Point, Eval, HeadResult]:
    """L-BFGS with a weak-Wolfe bracketing line search for one head."""
    theta = spec.theta0
    ev = yield theta
    f, g = _objective(spec, theta, ev)
    loss = ev[0]
    mem: list[tuple[torch.Tensor, torch.Tensor, float]] = []
    it = 0
    while True:
        gmax = float(g.abs().max())
        if gmax <= spec.gtol:
            return HeadResult(theta, it, True, loss, gmax)
        if it >= spec.max_iter:
            return HeadResult(theta, it, False, loss, gmax)
        d = _direction(g, mem)
        dg = float((d * g).sum())
        if not dg < 0:  # not a descent direction (lost curvature): restart from -g
            mem.clear()
            d, dg = -g, -float((g * g).sum())
        step = 1.0 if mem else 1.0 / float(d.norm())  # scipy's first step: unit length
        found = yield from _line_search(spec, theta, f, d, dg, step)
        it += 1
        if found is None:  # no decrease representable: as close as this precision gets
            return HeadResult(theta, it, gmax <= spec.gtol, loss, gmax)
        new_theta, new_f, new_g, new_loss = found
        s, y = new_theta - theta, new_g - g
        sy = float((s * y).sum())
        if sy > 1e-12 * float((y * y).sum()) ** 0.5 * float((s * s).sum()) ** 0.5:
            mem.append((s, y, 1.0 / sy))
            if len(mem) > spec.memory:
                mem.pop(0)
        decrease = (f - new_f) / max(abs(f), abs(new_f), 1.0)
        theta, f, g, loss = new_theta, new_f, new_g, new_loss
        if decrease <= FTOL:
            gmax = float(g.abs().max())
            return HeadResult(theta, it, True, loss, gmax)


def _line_search(spec: HeadSpec, theta: Point, f0: float, d: Point, dg0: float, step: float):
    """Bracketing search for a weak-Wolfe step; falls back to the best Armijo point found."""
    lo, hi = 0.0, float("inf")
    best = None
    for _ in range(MAX_LINESEARCH):
        trial = theta + step * d
        ev = yield trial
        f, g = _objective(spec, trial, ev)
        if not (f == f and f < float("inf")) or f > f0 + C1 * step * dg0:
            hi = step
            if lo == 0.0 and f == f and f < float("inf"):  # quadratic interpolation, safeguarded
                denom = 2.0 * (f - f0 - dg0 * step)
                guess = -dg0 * step * step / denom if denom > 0 else 0.5 * step
                step = min(max(guess, 0.1 * step), 0.5 * step)
            else:
                step = 0.5 * (lo + hi)
            continue
        best = (trial, f, g, ev[0])
        if float((g * d).sum()) < C2 * dg0:  # too short: the slope is still steep
            lo = step
            step = 2.0 * step if hi == float("inf") else 0.5 * (lo + hi)
            continue
        return best
    return best


def drive(
    specs: Sequence[HeadSpec], evaluate: Callable[[list[Point]], list[Eval]]
) -> list[HeadResult]:
    """Run heads in lock-step; `evaluate` gets every pending point and returns their losses."""
    gens = [head(s) for s in specs]
    pending = {i: next(gen) for i, gen in enumerate(gens)}
    results: list[HeadResult | None] = [None] * len(gens)
    while pending:
        order = list(pending)
        evals = evaluate([pending[i] for i in order])
        for i, ev in zip(order, evals, strict=True):
            try:
                pending[i] = gens[i].send(ev)
            except StopIteration as stop:
                results[i] = stop.value
                del pending[i]
    return results  # type: ignore[return-value]
