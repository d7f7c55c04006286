"""Probe backends (torch, scikit-learn, cuML): multinomial logistic regression at one C or
many. Each config in `configs/probe/` names one backend's `build` via `_target_`. Knows
arrays only; may import `core`.
"""

from probe.solvers.base import Certificate, Fit, Solver, certify, objective

__all__ = ["Certificate", "Fit", "Solver", "certify", "objective"]
