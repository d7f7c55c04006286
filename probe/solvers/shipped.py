"""A backend as the shipped config builds it, for callers that have no Hydra config: the
Python API (`probe.LinearProbe`, `probe.linear_probe`) gets the same solver, with the same
defaults, as `python -m probe probe=NAME` does."""

from __future__ import annotations

from functools import cache
from typing import Any

from omegaconf import OmegaConf

from probe.core.factory import make
from probe.core.paths import compose_config, config_dir
from probe.solvers.base import Solver


@cache
def _node(backend: str) -> dict[str, Any]:
    return OmegaConf.to_container(compose_config([f"probe={backend}"]).probe, resolve=True)


def backends() -> list[str]:
    """The names of `configs/probe/*.yaml`."""
    return sorted(p.stem for p in (config_dir() / "probe").glob("*.yaml"))


def build_backend(backend: str, *, device: str, **overrides: Any) -> Solver:
    """`configs/probe/{backend}.yaml` with `overrides` (e.g. `tol`, `max_iter`) on `device`.
    The config's `normalize` is the pipeline's, applied before any solver sees the rows."""
    if backend not in backends():
        raise ValueError(f"backend={backend!r}; use one of {', '.join(backends())}")
    node = {**_node(backend), **overrides}
    node.pop("normalize", None)
    return make(node, device=device)
