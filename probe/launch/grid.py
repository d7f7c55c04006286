"""A grid of runs -> a SLURM array task file (the logic behind `python -m probe.grid`).

A grid config (`configs/grid/NAME.yaml`) names encoders, datasets and variants; every
combination is one `python -m probe` run. Each run is composed with the real configs (so a
typo fails here, not hours later on the cluster) to learn where its result will land; runs
whose result exists are left out unless `force=true`. The task file has one line per run:

    encoder=E dataset=D [overrides...] results_dir=/abs/results  # result: /abs/results/E/D.json

`slurm/probe_array.sbatch` runs line `SLURM_ARRAY_TASK_ID` (1-based) of it and skips the run
when the file after `# result:` exists, so a resubmitted array does only what is missing.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from probe.core.errors import ProbeError
from probe.core.io import write_text_atomic
from probe.core.paths import config_dir, slurm_script
from probe.report.record import result_path

log = logging.getLogger(__name__)
RESULT_MARK = "  # result: "


@dataclass(frozen=True)
class Run:
    """One `python -m probe` invocation and the result file it writes."""

    overrides: tuple[str, ...]
    result: Path
    config: DictConfig | None = field(default=None, compare=False, repr=False)  # as composed

    def line(self) -> str:
        return shlex.join(self.overrides) + RESULT_MARK + str(self.result)


def expand(grid: DictConfig | dict, *, extra: Iterable[str] = ()) -> list[list[str]]:
    """Every run of a grid as a list of overrides: encoders x datasets x variants, in order."""
    encoders, datasets = list(grid.get("encoders") or []), list(grid.get("datasets") or [])
    if not encoders or not datasets:
        raise ProbeError(
            f"grid {grid.get('name')!r} needs non-empty `encoders` and `datasets` lists "
            "(see configs/grid/mlcd_linear_probe.yaml)"
        )
    variants = [list(v) for v in (grid.get("variants") or [[]])]
    common = [*map(str, grid.get("overrides") or []), *extra]
    runs, seen = [], set()
    for enc in encoders:
        for ds in datasets:
            for variant in variants:
                run = [f"encoder={enc}", f"dataset={ds}", *map(str, variant), *common]
                if tuple(run) not in seen:  # `all`-style unions may list a run twice
                    seen.add(tuple(run))
                    runs.append(run)
    return runs


def _compose(overrides: list[str]) -> DictConfig:
    """Compose the main `config` with these overrides, inside or outside a Hydra app."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name="config", overrides=overrides)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def resolve_runs(runs: list[list[str]], *, results_dir: str | Path) -> list[Run]:
    """Compose each run (validating names) and find the result file it will write."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    results_dir = Path(results_dir).expanduser().resolve()
    out: list[Run] = []
    problems: dict[str, str] = {}  # one message per distinct problem (a missing config, ...)
    for run in runs:
        overrides = [*run, f"results_dir={results_dir}"]
        try:
            cfg = _compose(overrides)
            path = result_path(cfg.results_dir, cfg.encoder.name, cfg.dataset.name)
        except (HydraException, OmegaConfBaseException) as err:
            problems.setdefault(str(err).strip().splitlines()[0], shlex.join(run))
            continue
        out.append(Run(overrides=tuple(overrides), result=path, config=cfg))
    if problems:
        listed = "; ".join(f"{msg} (e.g. `{run}`)" for msg, run in problems.items())
        raise ProbeError(
            f"{len(problems)} problem(s) composing the grid's runs: {listed}. "
            "Fix the grid config or add the missing config files."
        )
    return out


def plan(runs: list[Run], *, force: bool) -> tuple[list[Run], list[Run]]:
    """(to do, already done): runs whose result file exists are done unless `force`."""
    done = [] if force else [r for r in runs if r.result.exists()]
    return [r for r in runs if r not in done], done


def write_tasks(path: str | Path, todo: list[Run]) -> Path:
    return write_text_atomic(path, "".join(r.line() + "\n" for r in todo))


def sbatch_command(
    task_file: Path, n: int, *, parallel: int, force: bool, flags: Iterable[str] = ()
) -> str:
    """The submit command; `flags` (the grid's resources) win over the script's #SBATCH lines."""
    path = slurm_script()
    script = os.path.relpath(path)
    if script.startswith(".."):
        script = str(path)
    export = " --export=ALL,PROBE_FORCE=1" if force else ""
    extra = "".join(f" {shlex.quote(f)}" for f in flags)
    return (
        f"sbatch --array=1-{n}%{max(1, min(int(parallel), n))}{export}{extra} "
        f"{shlex.quote(script)} {shlex.quote(str(task_file))}"
    )


def make_grid(cfg: DictConfig) -> tuple[Path, list[Run], list[Run]]:
    """Expand, check and write the task file; returns (task file, todo, done).

    With nothing to do the file is written empty, so a stale one cannot be resubmitted.
    """
    extra = shlex.split(str(cfg.get("extra") or ""))
    runs = resolve_runs(expand(cfg.grid, extra=extra), results_dir=cfg.results_dir)
    todo, done = plan(runs, force=bool(cfg.force))
    name = cfg.grid.get("name") or "grid"
    task_file = Path(cfg.tasks_dir).expanduser().resolve() / f"{name}.txt"
    return write_tasks(task_file, todo), todo, done
