"""Probe backends. Each config in `configs/probe/` names one backend's `build` via `_target_`."""

from probe.solvers.base import Fit, Solver, objective

__all__ = ["Fit", "Solver", "objective"]
