"""Shared test helpers: compose the real configs/ with Hydra, run the real pipeline."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"

# Two xdist workers share the CI machine's two cores: one BLAS / OpenMP thread per worker (and
# per `python -m probe` child, which inherits the environment). More threads only
# oversubscribe the cores: with OpenBLAS's default of two, scipy's L-BFGS-B (the sklearn
# backend) took 5x the CPU time for the same fits. Set before numpy or torch is imported;
# a value already in the environment wins.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def config_names(group: str) -> list[str]:
    """Every config file of a group: a new file is tested the moment it exists."""
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """One tiny random checkpoint per encoder family (tests/tiny.py), built once per session."""
    from tiny import make_all

    return make_all(tmp_path_factory.mktemp("tiny_encoders"))


@pytest.fixture(scope="session")
def timm_dir(tmp_path_factory) -> Path:
    """Where tiny timm stand-ins are saved (tests/tiny.py `timm_checkpoint`)."""
    return tmp_path_factory.mktemp("tiny_timm")


@pytest.fixture
def dirs(tmp_path: Path) -> list[str]:
    """Overrides that keep a run's cache and results inside the test's temp dir."""
    return [
        f"cache_dir={tmp_path / 'cache'}",
        f"results_dir={tmp_path / 'results'}",
        f"data_root={tmp_path / 'data'}",
    ]


def run_cli(args: list[str], cwd: Path | None = None, env: dict | None = None):
    """`python -m probe ARGS` in a subprocess, as a user runs it."""
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    full_env = {**os.environ, "PYTHONPATH": pythonpath, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "probe", *args],
        capture_output=True, text=True, cwd=cwd or REPO, env=full_env, timeout=600,
    )  # fmt: skip


def run_main(overrides: list[str]):
    """The body of `python -m probe` (`probe.__main__.main`, through Hydra's cfg passthrough)
    in this process, on the config Hydra composes from `overrides`: what the command line runs
    once Hydra has made its run folder, without a fresh interpreter's 4 s of imports. Its
    summary line is logged to `probe`; a ProbeError ends it as on the command line, one logged
    line and SystemExit(2) (`probe.core.errors.exit_on_probe_error`)."""
    from probe.__main__ import main

    return main(compose_cfg(overrides))


def main_refuses(overrides: list[str], caplog) -> str:
    """`run_main(overrides)` ends with exit status 2 after exactly one ERROR record, without a
    traceback; that record's one line (what the command line prints after its timestamp)."""
    caplog.clear()
    with pytest.raises(SystemExit) as stop:
        run_main(overrides)
    assert stop.value.code == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None, [r.getMessage() for r in errors]
    line = errors[0].getMessage()
    assert "\n" not in line and "Traceback" not in line
    return line


def run_cli_without(package: str, args: list[str], cwd: Path):
    """`python -m probe ARGS` where `import PACKAGE` fails, as on a machine without the extra."""
    shadow = cwd / "shadow" / package
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(f"raise ImportError(\"No module named '{package}'\")\n")
    pythonpath = os.pathsep.join([str(REPO), str(shadow.parent)])
    return run_cli(args, cwd=cwd, env={"PYTHONPATH": pythonpath})


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real single-node SLURM (tests/slurm_cluster.py), started once per test session."""
    from slurm_cluster import SlurmCluster, unavailable

    why = unavailable()
    if why:
        pytest.skip(f"no SLURM test cluster: {why}")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def slurm(slurm_cluster):
    """The session's cluster, emptied after each test so a leftover job cannot block the next."""
    yield slurm_cluster
    slurm_cluster.cancel_all()
