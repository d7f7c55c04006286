"""The log folder Hydra makes for a run (`hydra.run.dir`, under `${results_dir}/logs`), made first.

Hydra creates that folder before `main` runs, so a `results_dir` that is a file, or on a
read-only disk, failed there with a traceback and exit status 1 (which the README reserves
for a line Hydra could not compose). `LogFolder` is a Hydra callback (`hydra.callbacks` in
configs/config.yaml) that runs just before: it makes the folder itself and turns a failure
into the command line's one-line error, exit status 2. Hydra's `now` resolver is cached, so
the folder made here is the one Hydra then uses.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from probe.core.errors import ProbeError, exit_on_probe_error

log = logging.getLogger("probe")


def make_log_folder(folder: str | Path, *, results_dir: Any) -> None:
    """mkdir -p `folder`; a ProbeError naming results_dir and what is in the way if it fails."""
    path = Path(folder).expanduser()
    fix = "set results_dir= (or PROBE_RESULTS_DIR) to a writable directory"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        what = f"{blocker} is a file, not a directory" if blocker else err.strerror or str(err)
        raise ProbeError(f"results_dir={results_dir}: cannot make the log folder {path} "
                         f"({what}); {fix}") from err  # fmt: skip


class LogFolder(Callback):
    """Makes the run's (or the sweep's) log folder before Hydra does."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._make(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._make(config, "hydra.sweep.dir")

    @staticmethod
    def _make(config: DictConfig, key: str) -> None:
        with exit_on_probe_error(log):
            make_log_folder(OmegaConf.select(config, key),
                            results_dir=config.get("results_dir"))  # fmt: skip
