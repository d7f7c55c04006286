"""What each array task of a grid asks SLURM for: a GPU or none, memory, CPUs, time, partition.

`python -m probe.grid` prints these as flags of the `sbatch` command; flags given to `sbatch`
win over the script's `#SBATCH` lines (sbatch(1): "options on the command line take
precedence over options in the script"), so the printed command fits the grid as it stands:
a grid whose runs are all CPU-only asks for `--gres=none` and no more memory than a default,
and is accepted on a CPU-only partition without editing anything.

One task runs any line of the file, so the task's request is the largest over the runs.
`memory_gb` sizes the memory from the run's estimate (`sizes.run_size`): the probe stage's
peak host memory with a margin, and for a run that loads a model on a GPU node at least
`EXTRACT_GB`; a run the configs cannot size (no `expected_sizes`, no encoder `width`) gets
the old defaults.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from omegaconf import DictConfig

from probe.core.errors import ProbeError
from probe.launch.sizes import run_size

# Encoder families that run no network: a GPU would only copy their rows back and forth.
CPU_ENCODERS = frozenset({"probe.encoders.pixels.build", "probe.encoders.precomputed.build"})
# Probe backends that cannot run without a GPU.
GPU_PROBES = frozenset({"probe.solvers.cuml.build"})
# Runs the configs cannot size: with a GPU, the script's long-standing 64 GB (ImageNet
# features plus a model and pinned batches); without one, 16 GB (no model weights on a device).
DEFAULT_MEM_GB = {True: 64, False: 16}
# A model extraction's host memory (not measured here: no GPU): the weights while they load
# (ViT-bigG/14's 1.8B parameters are 7.4 GB in float32), extract.prefetch_mb of decoded
# batches (2 GB by default) and the interpreter; 16 GB covers the shipped encoders.
EXTRACT_GB = 16
MARGIN = 1.25  # the estimate lies within 0.85x-1.5x of measured peaks (tests/test_memory.py)
MIN_GB = 4
_MEM = re.compile(r"^(\d+)([MGT]?)$", re.IGNORECASE)


@dataclass(frozen=True)
class TaskResources:
    """One array task's request, as sbatch flags."""

    gpus: int
    mem: str
    cpus: int | None = None
    time: str | None = None
    partition: str | None = None

    def flags(self) -> list[str]:
        out = [f"--gres=gpu:{self.gpus}" if self.gpus else "--gres=none", f"--mem={self.mem}"]
        if self.cpus:
            out.append(f"--cpus-per-task={self.cpus}")
        if self.time:
            out.append(f"--time={self.time}")
        if self.partition:
            out.append(f"--partition={self.partition}")
        # a task preempted or lost with its node goes back to the queue and resumes its shards
        out.append("--requeue")
        return out


def needs_gpu(run: DictConfig) -> bool:
    """Whether a composed run wants a GPU: `device=cuda...`; a GPU-only probe backend (cuML);
    or `device=auto` with an encoder that runs a network, unless the run only probes."""
    device = str(run.get("device", "auto"))
    if run.probe.get("_target_") in GPU_PROBES or device.startswith("cuda"):
        return True
    extracts = run.get("stage", "all") != "probe"
    return extracts and device == "auto" and run.encoder.get("_target_") not in CPU_ENCODERS


def memory_gb(run: DictConfig, *, gpu: bool) -> int:
    """GB (sbatch's G: GiB) of host memory one run needs: the probe stage's estimated peak
    x MARGIN, at least EXTRACT_GB when it extracts with a model on a GPU task."""
    size = run_size(run, gpu=gpu)
    if size.probe is None:
        return DEFAULT_MEM_GB[gpu]
    need = math.ceil(size.probe.host * MARGIN / 2**30)
    if (
        gpu
        and run.get("stage", "all") != "probe"
        and run.encoder.get("_target_") not in (CPU_ENCODERS)
    ):
        need = max(need, EXTRACT_GB)
    return max(need, MIN_GB)


def _mem_flag(value: object) -> str:
    text = str(value).strip()
    m = _MEM.match(text)
    if not m or int(m.group(1)) <= 0:
        raise ProbeError(
            f"resources.mem={value!r} is not a memory size; use e.g. 32G, 16000M or auto"
        )
    return f"{m.group(1)}{(m.group(2) or 'M').upper()}"  # sbatch's default unit is MB


def _gpus(value: object, runs: Sequence[DictConfig]) -> int:
    if str(value) == "auto":
        return int(any(needs_gpu(r) for r in runs))
    if isinstance(value, bool) or not str(value).isdigit():
        raise ProbeError(f"resources.gpus={value!r} must be auto or a number of GPUs (0, 1, ...)")
    return int(value)


def task_resources(runs: Iterable[DictConfig], options: DictConfig | dict) -> TaskResources:
    """The request of one task that may run any of `runs`, with `options` (the grid's
    `resources:` block: gpus, mem, cpus, time, partition) applied over the automatic values."""
    runs = list(runs)
    gpus = _gpus(options.get("gpus", "auto"), runs)
    mem = options.get("mem", "auto")
    if str(mem) == "auto":
        mem = f"{max((memory_gb(r, gpu=gpus > 0) for r in runs), default=DEFAULT_MEM_GB[False])}G"
    cpus = options.get("cpus")
    if cpus is not None and (isinstance(cpus, bool) or not str(cpus).isdigit() or int(cpus) < 1):
        raise ProbeError(f"resources.cpus={cpus!r} must be a positive number of CPUs, e.g. 8")
    return TaskResources(
        gpus=gpus,
        mem=_mem_flag(mem),
        cpus=int(cpus) if cpus is not None else None,
        time=str(options["time"]) if options.get("time") else None,
        partition=str(options["partition"]) if options.get("partition") else None,
    )
