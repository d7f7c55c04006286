"""`python -m probe [encoder=NAME] [dataset=NAME] [probe=NAME] [stage=...]`: one run, one result."""

from __future__ import annotations

import logging
import os
import signal
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from probe.core.errors import ProbeError, exit_on_probe_error
from probe.core.names import RESERVED, check_name
from probe.core.paths import config_dir
from probe.core.preempt import exit_on_preemption

log = logging.getLogger("probe")
# An absolute path makes Hydra find the shipped configs whatever the working directory is
# (inside the installed wheel, or at the root of a source checkout).
try:
    CONFIG_DIR = str(config_dir())
except ProbeError as err:
    sys.exit(f"probe: {err}")
REAL_COMMAND = "python -m probe encoder=mlcd_l14 dataset=cifar100"
# Under torchrun every rank runs this app: give each rank its own Hydra run dir (`_rankN`).
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    os.environ.setdefault("PROBE_LOG_SUFFIX", f"_rank{os.environ.get('RANK', '0')}")


def log_dir_name(value: object, key: str) -> str:
    """`${probe_name:${encoder.name},encoder.name}` in configs/config.yaml's log folder: Hydra
    makes that folder before `main` runs, so a name that would put it elsewhere (`..`, `/`)
    ends the run here, in one line and with status 2, before anything is written."""
    try:
        reserved = RESERVED if key == "encoder.name" else frozenset()
        return check_name(value, key=key, reserved=reserved)
    except ProbeError as err:
        sys.stderr.write(f"probe: {err}\n")
        sys.exit(2)


OmegaConf.register_new_resolver("probe_name", log_dir_name, replace=True)


def summary(record: dict) -> str:
    """The headline numbers of a result, whatever its evaluation: the score with its interval
    at what val chose (C, k, or a trained head's lr and wd), or few-shot's mean per k."""
    metric = record["metric"]
    if "by_k" in record:  # few-shot: one mean per shot count
        return f"{metric} " + ", ".join(
            f"{k}-shot: {v['mean']:.2f}%" + ("" if v["std"] is None else f" +- {v['std']:.2f}")
            for k, v in record["by_k"].items()
        )
    low, high = record["score_ci"]
    if "C" in record:
        chosen = f"C={record['C']:.3g}"
    elif "k" in record:
        chosen = f"k={record['k']}"
    else:  # a trained head: eval=attentive, eval=sgd_linear
        chosen = f"lr={record['lr']:.3g}, wd={record['wd']:.3g}"
    return f"{metric} {record['score']:.2f}% [{low:.2f}, {high:.2f}] at {chosen} (chosen on val)"


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    if int(os.environ.get("RANK", "0")) > 0:  # rank 0 speaks for a torchrun job
        logging.getLogger("probe").setLevel(logging.WARNING)
    with exit_on_probe_error(log), exit_on_preemption(log):  # SIGTERM: exit 143, see preempt.py
        from probe.run import run

        record = run(cfg)
    if record is None:
        log.info("stage=extract done: features cached under %s", cfg.cache_dir)
        return
    log.info("%s on %s: %s (%s; n_train=%d n_val=%d n_test=%d; extract %.1fs, probe %.1fs) -> %s",
             record["encoder"], record["dataset"], summary(record), record["backend"] or "k-NN",
             record["n_train"], record["n_val"], record["n_test"], record["seconds"]["extract"],
             record["seconds"]["probe"], record["path"])  # fmt: skip
    if cfg.encoder.name == "pixels":
        log.info("next, a real encoder (downloads weights and data): %s", REAL_COMMAND)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C before the run installed its handler (preempt.py)
        log.warning("interrupted (SIGINT) before the run started; nothing was written")
        sys.exit(128 + int(signal.SIGINT))
