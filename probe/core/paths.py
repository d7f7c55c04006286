"""Where the shipped data lives: the configs, the published numbers and the SLURM script.

A wheel carries the repository's `configs/`, `results/published/` and `slurm/` inside the
package (`probe/configs`, `probe/published`, `probe/slurm`; the mapping is in
pyproject.toml). A source checkout (an editable install, or the tests run from the tree) has
them at the repository root. Either way they are found from any working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probe.core.errors import ProbeError

PACKAGE = Path(__file__).resolve().parents[1]
REPO = PACKAGE.parent


def _shipped(packaged: str, in_repo: str, marker: str) -> Path:
    for candidate in (PACKAGE / packaged, REPO / in_repo):
        if (candidate / marker).exists():
            return candidate
    raise ProbeError(
        f"probe's {in_repo}/ is missing (looked in {PACKAGE / packaged} and {REPO / in_repo}); "
        "reinstall with `pip install probe-bench` or `pip install -e .` from a full checkout"
    )


def config_dir() -> Path:
    """The primary Hydra config folder (`config.yaml` and the groups beside it)."""
    return _shipped("configs", "configs", "config.yaml")


def published_dir() -> Path:
    """The published numbers as CSV, one file per paper table."""
    return _shipped("published", "results/published", "mlcd_linear_probe.csv")


def slurm_script() -> Path:
    """`probe_array.sbatch`: one array task per line of a grid's task file."""
    return _shipped("slurm", "slurm", "probe_array.sbatch") / "probe_array.sbatch"


def compose_config(overrides: list[str]) -> Any:
    """The main `config` composed with `overrides`, inside or outside a running Hydra app
    (`python -m probe.grid` and `probe.table` are apps; tests and libraries are not), with
    its protocol card applied as `python -m probe` applies it (`probe.core.card`)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from probe.core.card import apply_card

    if GlobalHydra.instance().is_initialized():
        return apply_card(compose(config_name="config", overrides=overrides))
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return apply_card(compose(config_name="config", overrides=overrides))
