"""One C's fit across precision phases and segments, with its curvature-adaptive scaling.

The torch solver runs each head in segments of a few iterations. Between segments the
head's diagonal scaling (`Problem.scale`) is reset if the mean softmax curvature at its
current point has moved by more than 2x: at weak regularisation predictions grow confident
and the curvature falls by orders of magnitude, so a scaling fixed at the start would
misweight the coefficient columns against the intercept and the regulariser. Rescaling is an
exact diagonal change of variables, so the point, the last evaluation and the L-BFGS
memory all carry over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from probe.solvers.base import Certificate
from probe.solvers.lbfgs import FTOL, Eval, HeadSpec, Point
from probe.solvers.resident import Problem

FINISHING = ("float32", "float64")  # precisions a fit may end in (TF32 only warms up)
# the gradient rule ends a fit only once its last iteration decreased f by at most this
# (relative): at weak regularisation the paper's absolute rule holds far from the optimum
# (on `strong`, C = 1e6: a warm start met it after 1 iteration at 4.5 times the objective
# scikit-learn's cold start reached); docs/solvers.md
SETTLE = 1e-6
FLAT = 1e-11  # float64: relative changes of f below this are judged by slopes (lbfgs.HeadSpec)


class Track:
    """One C's fit across precision phases and segments, in scaled working coordinates."""

    def __init__(self, p: Problem, C: float, reg: float, start: Point) -> None:
        self.p, self.C, self.reg = p, float(C), reg
        self.curv = (1.0 - 1.0 / p.k) / p.k  # softmax curvature at uniform predictions
        self.scale = p.scale(reg, self.curv)
        self.theta = start / self.scale
        self.mem: list = []
        self.ev: Eval | None = None
        self.state: dict = {}
        self.iters = 0
        self.moved = float("inf")  # relative decrease of f in the last iteration
        self.final: Any = None
        self.cert: Certificate | None = None  # the float64 certificate at `final`, if taken

    def enter_phase(self) -> None:
        """A new precision: evaluations and cached logits from another are not reused."""
        self.ev, self.state = None, {}

    def spec(self, *, tol: float, noise: float, budget: int, memory: int, mode: str) -> HeadSpec:
        """The next segment's head, rescaled first if the curvature moved. In the last
        precision only the gradient rule ends a fit (no relative-decrease stop)."""
        curv = self.state.get("curv", self.curv)
        if not 0.5 <= curv / self.curv <= 2.0:
            self._rescale(curv)
        p, scale = self.p, self.scale
        last = mode == FINISHING[-1]

        check = torch.float64 if mode == "float64" else torch.float32  # as the pass's

        def grad_max(g: torch.Tensor) -> float:
            return float(p.grad_to_original(g / scale, dtype=check).abs().max())

        return HeadSpec(reg=self.reg * scale[:-1] ** 2, gtol=tol, max_iter=budget,
                        theta0=self.theta, memory=memory, mem0=self.mem, ev0=self.ev,
                        noise=noise, scale=scale, state=self.state, grad_max=grad_max,
                        ftol=0.0 if last else FTOL, flat=FLAT if last else 0.0,
                        settle=SETTLE, moved0=self.moved)  # fmt: skip

    def _rescale(self, curv: float) -> None:
        """Diagonal change of variables; L-BFGS pairs map exactly (s/r, y*r keep s.y)."""
        new = self.p.scale(self.reg, curv)
        r = new / self.scale
        self.theta = self.theta / r
        self.mem = [(s / r, y * r, rho) for s, y, rho in self.mem]
        if self.ev is not None:
            self.ev = (self.ev[0], self.ev[1] * r)
        self.scale, self.curv = new, curv

    def absorb(
        self,
        r: Any,
        spec: HeadSpec,
        *,
        gtol: float,
        tol: float,
        mode: str,
        max_iter: int,
        certify: Callable[[Point], Certificate],
    ) -> bool:
        """Takes a segment's result; True if the head goes on in this phase.

        `gtol` is the rule on the head's own (mean-scaled) gradient, `tol` the same rule on
        the float64 certificate's sum-scaled one. A float32 head that meets `gtol` by its own
        float32-matmul gradient is certified (`certify`, at the point in the working basis);
        if the certificate fails, the fit goes on in float64 from there, keeping its memory.
        """
        self.theta, self.mem, self.ev, self.moved = r.theta, r.mem, r.ev, r.moved
        self.iters += r.iterations
        done = self.iters >= max_iter
        if not done and mode in FINISHING and r.grad_max <= gtol and spec.settled(r.moved):
            self.cert = certify(r.theta * self.scale)
            done = self.cert.grad_max <= tol or mode == FINISHING[-1]
        go_on = r.iterations == spec.max_iter and not r.converged  # segment budget used up
        if done or (mode == FINISHING[-1] and not go_on):  # the last precision: take it
            r.theta = r.theta * self.scale  # back to the working basis
            self.final = r
            return False
        self.cert = None
        return go_on  # False: stalled, stopped by ftol or not certified: try the next one
