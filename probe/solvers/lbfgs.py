"""L-BFGS written as a generator, so several heads can share one pass over the features.

Each head is a generator that yields the point it wants evaluated next and receives
`(loss, grad)` of the sample-averaged log-loss there; it adds the L2 term itself. `drive`
runs any number of heads in lock-step: every round it evaluates all pending points together
(one pass over X for all of them), then hands each head its own result. A head alone is plain
sequential L-BFGS; heads together keep fully separate L-BFGS states and line searches (one
shared L-BFGS over all heads converges far worse, see docs/solvers.md).

The objective per head is scikit-learn's, scaled by 1/(C N) (same minimiser):
    f(W, b) = mean_i logloss_i + ||W||^2 / (2 C N)      (b unregularised)
and the stopping rule is scipy's as sklearn calls it: max |grad f| <= gtol, or (unless the
caller sets `ftol=0`) a relative decrease of f below 64 machine epsilons. A head may run in
transformed coordinates (the caller's preconditioning): then `HeadSpec.grad_max` measures
the rule in the original ones, and `reg` is per column. A head can continue from another's
curvature pairs (`mem0`), which is how a float32 fit that reached its rounding floor is
finished in float64 without restarting L-BFGS from a bare gradient step.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field

import torch

FTOL = 64 * 2.220446049250313e-16  # scipy's ftol as scikit-learn sets it
C1, C2 = 1e-4, 0.9  # weak Wolfe constants
MAX_LINESEARCH = 25
MAX_EXPAND = 100.0  # largest factor one secant extrapolation may grow a step by

Point = torch.Tensor  # (K, D+1) float64: coef | intercept
Eval = tuple[float, torch.Tensor]  # (mean log-loss, its gradient (K, D+1) float64)
Pair = tuple[torch.Tensor, torch.Tensor, float]  # L-BFGS memory: (s, y, 1 / s.y)


@dataclass
class HeadResult:
    theta: Point
    iterations: int
    converged: bool
    loss: float  # mean log-loss at theta
    grad_max: float  # max |grad f| at theta
    mem: list[Pair] = field(default_factory=list)  # curvature pairs, to continue from
    ev: Eval | None = None  # the evaluation at theta, so a continuation need not redo it
    moved: float = float("inf")  # relative decrease of f in the last iteration (0: stalled)


@dataclass
class HeadSpec:
    """One head to fit: its scaled regularisation, stopping rule and start point."""

    reg: float | torch.Tensor  # 1 / (C N), or per coef column (D,) in transformed coordinates
    gtol: float
    max_iter: int
    theta0: Point
    memory: int = 10
    mem0: list[Pair] = field(default_factory=list)  # curvature pairs to start from
    ev0: Eval | None = None  # the evaluation at theta0 when already known
    # relative rounding noise of f: a step whose predicted decrease is below it cannot be
    # told apart from no step (float32 matmuls: the head stops there; the caller finishes
    # in float64)
    noise: float = 0.0
    scale: torch.Tensor | None = None  # the caller's change of variables, passed back to it
    state: dict = field(default_factory=dict)  # the caller's per-head scratch (cached logits)
    # the stopping rule's max |gradient|, in the caller's original coordinates when the head
    # runs in transformed ones (default: max |g| of the gradient the head sees)
    grad_max: Callable[[torch.Tensor], float] | None = None
    ftol: float = FTOL  # relative decrease that ends the head; 0: only the gradient rule does
    # relative change of f below which the line search trusts slopes, not values (the
    # approximate Wolfe conditions of Hager and Zhang): near the optimum of a large problem
    # the decrease the rule still needs is below float64's resolution of f; 0: never
    flat: float = 0.0
    # relative decrease of f in the last iteration above which the gradient rule does not
    # end the head yet (0: it always does); `moved0` is that decrease before this segment
    settle: float = 0.0
    moved0: float = float("inf")

    def settled(self, moved: float) -> bool:
        return self.settle == 0.0 or moved <= self.settle

    def gmax(self, g: torch.Tensor) -> float:
        return float(g.abs().max()) if self.grad_max is None else self.grad_max(g)


def dot(a: torch.Tensor, b: torch.Tensor) -> float:
    """sum(a * b) by torch's own kernels. Not `torch.dot`: on CPU that is a BLAS call, and
    right after a pass's MKL matmuls it took 3 ms instead of 15 us (thread pools contending
    for 2 cores): 32 of a 62 s search (docs/solvers.md)."""
    return float(torch.mul(a, b).sum())


def _objective(spec: HeadSpec, theta: Point, ev: Eval) -> tuple[float, torch.Tensor]:
    """Adds the L2 term (coef only, never the intercept) to the mean log-loss."""
    loss, grad = ev
    coef = theta[:, :-1]
    rc = spec.reg * coef
    f = loss + 0.5 * dot(rc, coef)
    g = grad.clone()
    g[:, :-1] += rc
    return f, g


def _direction(g: torch.Tensor, mem: list[tuple[torch.Tensor, torch.Tensor, float]]):
    """The two-loop recursion: -H g with H the L-BFGS inverse-Hessian estimate."""
    q = g.clone()
    alphas = []
    for s, y, rho in reversed(mem):
        a = rho * dot(s, q)
        q.add_(y, alpha=-a)
        alphas.append(a)
    if mem:
        s, y, _ = mem[-1]
        q *= dot(s, y) / dot(y, y)
    for (s, y, rho), a in zip(mem, reversed(alphas), strict=True):
        b = rho * dot(y, q)
        q.add_(s, alpha=a - b)
    return q.neg_()


def head(spec: HeadSpec) -> Generator[Point, Eval, HeadResult]:
    """L-BFGS with a weak-Wolfe bracketing line search for one head."""
    theta = spec.theta0
    ev = spec.ev0 if spec.ev0 is not None else (yield theta)
    f, g = _objective(spec, theta, ev)
    mem = list(spec.mem0)
    it, moved = 0, spec.moved0
    while True:
        gmax = spec.gmax(g)
        if gmax <= spec.gtol and spec.settled(moved):
            return HeadResult(theta, it, True, ev[0], gmax, mem, ev, moved)
        if it >= spec.max_iter:
            return HeadResult(theta, it, False, ev[0], gmax, mem, ev, moved)
        d = _direction(g, mem)
        dg = dot(d, g)
        if not dg < 0:  # not a descent direction (lost curvature): restart from -g
            mem.clear()
            d, dg = -g, -dot(g, g)
        step = 1.0 if mem else 1.0 / float(d.norm())  # scipy's first step: unit length
        found = yield from _line_search(spec, theta, f, d, dg, step)
        it += 1
        if found is None:  # no decrease representable: as close as this precision gets
            return HeadResult(theta, it, gmax <= spec.gtol, ev[0], gmax, mem, ev, 0.0)
        new_theta, new_f, new_g, new_ev = found
        s, y = new_theta - theta, new_g - g
        sy = dot(s, y)
        if sy > 1e-12 * dot(y, y) ** 0.5 * dot(s, s) ** 0.5:
            mem.append((s, y, 1.0 / sy))
            if len(mem) > spec.memory:
                mem.pop(0)
        decrease = (f - new_f) / max(abs(f), abs(new_f), 1.0)
        moved = max(f - new_f, 0.0) / max(abs(f), abs(new_f))
        theta, f, g, ev = new_theta, new_f, new_g, new_ev
        if spec.ftol > 0 and decrease <= spec.ftol:
            return HeadResult(theta, it, True, ev[0], spec.gmax(g), mem, ev, moved)


def _sufficient(spec: HeadSpec, f0: float, dg0: float, step: float, f: float, slope: float):
    """(sufficient decrease?, judged by slopes?). By values: Armijo. Where the change of f is
    within `spec.flat` of rounding: the approximate Armijo condition, slope <= (2 C1 - 1)
    dg0, i.e. the secant of the slopes predicts a decrease of at least C1 step |dg0|."""
    finite = f == f and f < float("inf")
    if finite and spec.flat and abs(f - f0) <= spec.flat * max(abs(f0), 1.0):
        return slope <= (2.0 * C1 - 1.0) * dg0, True
    return finite and f <= f0 + C1 * step * dg0, False


def _line_search(spec: HeadSpec, theta: Point, f0: float, d: Point, dg0: float, step: float):
    """Bracketing search for a weak-Wolfe step; falls back to the best Armijo point found.

    While no upper bound is known, a step that is still too short grows by secant
    extrapolation of the slope (the first step of a fit is often thousands of times too
    short on normalised features; doubling would cost a dozen passes).
    """
    lo, dlo, hi = 0.0, dg0, float("inf")
    best = None
    for _ in range(MAX_LINESEARCH):
        trial = theta + step * d
        ev = yield trial
        f, g = _objective(spec, trial, ev)
        slope = dot(g, d)
        ok, by_slopes = _sufficient(spec, f0, dg0, step, f, slope)
        if not ok:
            if spec.noise and -step * dg0 < spec.noise * max(abs(f0), 1.0):
                return best  # the decrease sought is below the rounding noise of f
            hi = step
            if lo == 0.0 and not by_slopes and f == f and f < float("inf"):
                denom = 2.0 * (f - f0 - dg0 * step)  # quadratic interpolation, safeguarded
                guess = -dg0 * step * step / denom if denom > 0 else 0.5 * step
                step = min(max(guess, 0.1 * step), 0.5 * step)
            else:
                step = 0.5 * (lo + hi)
            continue
        best = (trial, f, g, ev)
        if slope < C2 * dg0:  # too short: the slope is still steep
            if hi == float("inf"):
                grow = (lo - step) * slope / (slope - dlo) if slope > dlo else float("inf")
                lo, dlo = step, slope
                step = step + min(max(grow, step), (MAX_EXPAND - 1.0) * step)
            else:
                lo, dlo = step, slope
                step = 0.5 * (lo + hi)
            continue
        return best
    return best


def drive(
    specs: Sequence[HeadSpec], evaluate: Callable[[list[Point], list[HeadSpec]], list[Eval]]
) -> list[HeadResult]:
    """Run heads in lock-step; `evaluate` gets every pending point (with its head's spec)
    and returns their losses."""
    gens = [head(s) for s in specs]
    pending = {i: next(gen) for i, gen in enumerate(gens)}
    results: list[HeadResult | None] = [None] * len(gens)
    while pending:
        order = list(pending)
        evals = evaluate([pending[i] for i in order], [specs[i] for i in order])
        for i, ev in zip(order, evals, strict=True):
            try:
                pending[i] = gens[i].send(ev)
            except StopIteration as stop:
                results[i] = stop.value
                del pending[i]
    return results  # type: ignore[return-value]
