"""What an evaluation hands back to the pipeline, and the bootstrap settings it is given.

Every evaluation (`configs/eval/*.yaml`: linear, fewshot, knn, attentive, sgd_linear) is a
function called with the protocol's train / val / test arrays and the task; it returns an
`Outcome`: the fields of its result record, and for the evaluations with a head (linear,
attentive, sgd_linear) the head and test outputs to save beside it.
The pipeline (`probe.run`) adds the provenance every result carries and writes the files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.solvers.base import Solver

Pair = tuple[np.ndarray, np.ndarray]


@dataclass
class Outcome:
    eval: str  # the config's name: linear | fewshot | knn | attentive | sgd_linear
    fields: dict[str, Any]
    head: dict[str, Any] | None = None  # its arrays (linear: coef, intercept, C) and outputs
    backend: str | None = None  # the solver that fitted it (None for k-NN)


@dataclass(frozen=True)
class Task:
    """The data and settings every evaluation gets."""

    train: Pair
    val: Pair
    test: Pair
    num_classes: int
    metric: str
    device: str
    make_solver: Callable[[], Solver]
    bootstrap: dict[str, Any] = field(default_factory=dict)
    # the linear probe's rules from the protocol card: the C search (None: the CLIP search)
    # and the rows of the final fit (`linear.REFIT_RULES`)
    strategy: Any = None
    refit_on: str = "train+val"
    # token features (N x T x D): how many leading tokens of a row are prefix tokens (class,
    # registers), which `eval=attentive` leaves out by default; 0 for pooled features
    prefix_tokens: int = 0


def bootstrap_options(cfg: Any) -> dict[str, Any]:
    """`bootstrap.{resamples,level,seed}` from the run config, checked."""
    opts = {"resamples": 1000, "level": 0.95, "seed": 0, **dict(cfg or {})}
    if int(opts["resamples"]) < 1:
        raise ProbeError(f"bootstrap.resamples={opts['resamples']} must be a positive integer")
    if not 0 < float(opts["level"]) < 1:
        raise ProbeError(f"bootstrap.level={opts['level']} must be in (0, 1), e.g. 0.95")
    return {"resamples": int(opts["resamples"]), "level": float(opts["level"]),
            "seed": int(opts["seed"])}  # fmt: skip
