"""`python -m probe.grid grid=NAME`: a grid of runs -> a SLURM array task file (`probe.launch`)."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from probe.core.errors import exit_on_probe_error
from probe.core.paths import config_dir
from probe.launch.grid import make_grid, sbatch_command
from probe.launch.resources import task_resources

log = logging.getLogger("probe.grid")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="probe_grid")
def main(cfg: DictConfig) -> None:
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


if __name__ == "__main__":
    main()
