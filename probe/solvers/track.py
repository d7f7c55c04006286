"""One C's fit across precision phases and segments, with its curvature-adaptive scaling.

The torch solver runs each head in segments of a few iterations. Between segments the
head's diagonal scaling (`Resident.scale`) is reset if the mean softmax curvature at its
current point has moved by more than 2x: at weak regularisation predictions grow confident
and the curvature falls by orders of magnitude, so a scaling fixed at the start would
misweight the coefficient columns against the intercept and the regulariser. Rescaling is an
exact diagonal change of variables, so the point, the last evaluation and the L-BFGS
memory all carry over.
"""

from __future__ import annotations

from typing import Any

import torch

from probe.solvers.lbfgs import Eval, HeadSpec, Point
from probe.solvers.resident import Resident

FINISHING = ("float32", "float64")  # precisions a fit may end in (TF32 only warms up)


class Track:
    """One C's fit across precision phases and segments, in scaled working coordinates."""

    def __init__(self, p: Resident, reg: float, start: Point) -> None:
        self.p, self.reg = p, reg
        self.curv = (1.0 - 1.0 / p.k) / p.k  # softmax curvature at uniform predictions
        self.scale = p.scale(reg, self.curv)
        self.theta = start / self.scale
        self.mem: list = []
        self.ev: Eval | None = None
        self.state: dict = {}
        self.iters = 0
        self.final: Any = None

    def enter_phase(self) -> None:
        """A new precision: evaluations and cached logits from another are not reused."""
        self.ev, self.state = None, {}

    def spec(self, *, tol: float, noise: float, budget: int, memory: int) -> HeadSpec:
        """The next segment's head, rescaled first if the curvature moved."""
        curv = self.state.get("curv", self.curv)
        if not 0.5 <= curv / self.curv <= 2.0:
            self._rescale(curv)
        p, scale = self.p, self.scale

        def grad_max(g: torch.Tensor) -> float:
            return float(p.grad_to_original(g / scale).abs().max())

        return HeadSpec(reg=self.reg * scale[:-1] ** 2, gtol=tol, max_iter=budget,
                        theta0=self.theta, memory=memory, mem0=self.mem, ev0=self.ev,
                        noise=noise, scale=scale, state=self.state,
                        grad_max=grad_max)  # fmt: skip

    def _rescale(self, curv: float) -> None:
        """Diagonal change of variables; L-BFGS pairs map exactly (s/r, y*r keep s.y)."""
        new = self.p.scale(self.reg, curv)
        r = new / self.scale
        self.theta = self.theta / r
        self.mem = [(s / r, y * r, rho) for s, y, rho in self.mem]
        if self.ev is not None:
            self.ev = (self.ev[0], self.ev[1] * r)
        self.scale, self.curv = new, curv

    def absorb(self, r: Any, spec: HeadSpec, *, gtol: float, mode: str, max_iter: int) -> bool:
        """Takes a segment's result; True if the head goes on in this phase."""
        self.theta, self.mem, self.ev = r.theta, r.mem, r.ev
        self.iters += r.iterations
        done = self.iters >= max_iter or (mode in FINISHING and r.grad_max <= gtol)
        go_on = r.iterations == spec.max_iter and not r.converged  # segment budget used up
        if done or (mode == FINISHING[-1] and not go_on):  # the last precision: take it
            r.theta = r.theta * self.scale  # back to the working basis
            self.final = r
            return False
        return go_on  # False: stalled or stopped by ftol at this precision, try the next one
