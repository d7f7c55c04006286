"""A grid of runs -> a SLURM array task file (the logic behind `python -m probe.grid`).

A grid config (`configs/grid/NAME.yaml`) names encoders, datasets and variants; every
combination is one `python -m probe` run. Each run is composed with the real configs (so a
typo fails here, not hours later on the cluster) to learn where its result will land; runs
whose result is done (`probe.report.done`: a whole, complete result of that run, not merely a
file) are left out unless `force=true`. The task file has one line per run:

    encoder=E dataset=D [overrides...] results_dir=/abs/results  # result: /abs/results/E/D.json

(E carries a non-default feature kind or normalisation: `dinov2_l14@last4`, see
`probe.report.record.result_name`, so a grid over `encoder.feature` writes one file per kind.)

Two runs that would write one result file are refused (a grid whose variants differ only in,
say, `probe=` must give each variant a `results_dir=` or an `encoder.name=`).
`slurm/probe_array.sbatch` runs line `SLURM_ARRAY_TASK_ID` (1-based) of it and skips the run
when the result after `# result:` is done (the same check, `python -m probe.report.done`), so
a resubmitted array does only what is missing or damaged.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from probe.core import params
from probe.core.card import card_name
from probe.core.errors import ProbeError
from probe.core.io import write_text_atomic
from probe.core.names import check_name, check_run_names
from probe.core.paths import compose_config, slurm_script
from probe.report.done import read_result
from probe.report.record import result_name, result_path

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


def _with_results_dir(run: list[str], results_dir: Path) -> list[str]:
    """The run with one absolute `results_dir=` last: its own (a variant's), else the grid's.

    Absolute, because an array task may start in another directory than this command.
    """
    own = [o.partition("=")[2] for o in run if o.startswith("results_dir=")]
    where = Path(own[-1]).expanduser().resolve() if own else results_dir
    return [*(o for o in run if not o.startswith("results_dir=")), f"results_dir={where}"]


def resolve_runs(runs: list[list[str]], *, results_dir: str | Path) -> list[Run]:
    """Compose each run (validating names) and find the result file it will write."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    results_dir = Path(results_dir).expanduser().resolve()
    out: list[Run] = []
    problems: dict[str, str] = {}  # one message per distinct problem (a missing config, ...)
    for run in runs:
        overrides = _with_results_dir(run, results_dir)
        try:
            cfg = compose_config(overrides)
            params.check(cfg)  # a wrong value fails here, not in every array task
            name = result_name(cfg.encoder, cfg.get("probe"), protocol=card_name(cfg))
            path = result_path(cfg.results_dir, name, cfg.dataset.name, cfg.eval.name)
        except (HydraException, OmegaConfBaseException, ProbeError) as err:
            problems.setdefault(str(err).strip().splitlines()[0], shlex.join(run))
            continue
        try:
            check_run_names(cfg)
        except ProbeError as err:
            raise ProbeError(f"{err} (the grid's run `{shlex.join(run)}`)") from None
        out.append(Run(overrides=tuple(overrides), result=path, config=cfg))
    if problems:
        listed = "; ".join(f"{msg} (e.g. `{run}`)" for msg, run in problems.items())
        raise ProbeError(
            f"{len(problems)} problem(s) composing the grid's runs: {listed}. "
            "Fix the grid config or add the missing config files."
        )
    refuse_shared_results(out)
    return out


def refuse_shared_results(runs: list[Run]) -> None:
    """Two runs writing one result file: one would overwrite (or skip) the other."""
    by_path: dict[Path, list[Run]] = {}
    for run in runs:
        by_path.setdefault(run.result, []).append(run)
    shared = {p: rs for p, rs in by_path.items() if len(rs) > 1}
    if not shared:
        return
    listed = "; ".join(
        f"{path} by " + " and ".join(f"`{shlex.join(r.overrides[:-1])}`" for r in rs)
        for path, rs in shared.items()
    )
    raise ProbeError(
        f"{len(shared)} result file(s) would be written by more than one run: {listed}. Give "
        "each variant its own result path: results_dir=DIR in the variant (one results tree "
        "per variant, the feature cache shared) or encoder.name=NAME (a new name for the "
        "encoder row; its features are cached under that name)"
    )


def plan(runs: list[Run], *, force: bool) -> tuple[list[Run], list[Run]]:
    """(to do, already done): a run is done when its result is (`probe.report.done`: whole,
    complete, its own, with its head), unless `force`; a damaged one is done again."""
    if force:
        return list(runs), []
    done = []
    for run in runs:
        why = read_result(run.result)[1]
        if why is None:
            done.append(run)
        elif run.result.exists() or run.result.is_symlink():
            log.warning("%s is not a finished result (%s): the grid runs it again", run.result,
                        why)  # fmt: skip
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
    name = check_name(cfg.grid.get("name") or "grid", key="grid.name")  # the task file's name
    task_file = Path(cfg.tasks_dir).expanduser().resolve() / f"{name}.txt"
    return write_tasks(task_file, todo), todo, done
