"""`python -m probe.grid grid=NAME`: a grid of runs -> a SLURM array task file (`probe.launch`)."""

from __future__ import annotations

import logging
import shlex

import hydra
from omegaconf import DictConfig

from probe.core.errors import exit_on_probe_error
from probe.core.paths import config_dir
from probe.launch.grid import expand, make_grid, plan, resolve_runs, sbatch_command
from probe.launch.resources import memory_gb, task_resources
from probe.launch.sizes import dry_run_lines, token_space_lines

log = logging.getLogger("probe.grid")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="probe_grid")
def main(cfg: DictConfig) -> None:
    if cfg.get("dry_run"):
        with exit_on_probe_error(log):
            dry_run(cfg)
        return
    with exit_on_probe_error(log):
        task_file, todo, done = make_grid(cfg)
        flags = task_resources([r.config for r in todo], cfg.resources).flags() if todo else []
    name = cfg.grid.get("name")
    if not todo:
        print(f"grid {name}: all {len(done)} results exist; nothing to submit (force=true reruns)")
        return
    print(f"grid {name}: {len(todo)} runs to do, {len(done)} already done -> {task_file}")
    print(sbatch_command(task_file, len(todo), parallel=cfg.parallel, force=bool(cfg.force),
                        flags=flags))  # fmt: skip


def dry_run(cfg: DictConfig) -> None:
    """Per run still to do: images, cache size, probe memory and --mem; nothing written."""
    extra = shlex.split(str(cfg.get("extra") or ""))
    runs = resolve_runs(expand(cfg.grid, extra=extra), results_dir=cfg.results_dir)
    todo, done = plan(runs, force=bool(cfg.force))
    flags = task_resources([r.config for r in todo], cfg.resources) if todo else None
    gpu = bool(flags and flags.gpus)
    print(f"grid {cfg.grid.get('name')}: {len(todo)} runs to do, {len(done)} already done "
          "(dry run: nothing written)")  # fmt: skip
    labels = [(shlex.join(r.overrides[:-1]), r.config) for r in todo]  # without results_dir
    for line in dry_run_lines(labels, gpu=gpu, mem=[memory_gb(r.config, gpu=gpu) for r in todo]):
        print(line)
    for line in token_space_lines([r.config for r in todo]):
        print(line)
    if flags is not None:
        print("each array task asks for: " + " ".join(flags.flags()))


if __name__ == "__main__":
    main()
