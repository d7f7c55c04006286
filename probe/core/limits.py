"""How much memory this process may still take: the host's, its cgroup's, its SLURM job's,
its GPU's. The smallest host limit wins; each comes with the name of where it was read.

Every figure is what the process may hold at its peak, counting what it holds already
(its resident set is added back to what the kernel and the cgroup call free): a memory
estimate is of the whole process, the runtime included.

- `/proc/meminfo` `MemAvailable` (kB): what can be allocated without swapping.
- cgroup v2: `memory.max` minus `memory.current` of the process's cgroup and each parent
  (`/proc/self/cgroup` line `0::/path`); v1: `memory.limit_in_bytes` minus
  `memory.usage_in_bytes` under the `memory` controller's mount.
- SLURM: `SLURM_MEM_PER_NODE` (sbatch(1): "Same as --mem", the memory per node), else
  `SLURM_MEM_PER_CPU` x `SLURM_CPUS_ON_NODE` ("Number of CPUs allocated to the batch step"
  on this node); both in megabytes (slurm `src/common/env.c`, `env_array_for_batch_job`
  prints `pn_min_memory`, kept in MB).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

MB = 2**20
UNLIMITED = 2**60  # cgroup v1 writes a page-rounded 2^63 for "no limit"


def _meminfo(path: Path, key: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            name, _, rest = line.partition(":")
            if name.strip() == key:
                return int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def own_rss(status: Path = Path("/proc/self/status")) -> int:
    """This process's resident set (VmRSS), 0 where unknown."""
    return _meminfo(status, "VmRSS") or 0


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _cgroup_free(root: Path, proc_cgroup: Path) -> int | None:
    """Smallest (limit - usage) over the process's cgroup and its parents, v2 then v1."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    found = []
    for line in lines:
        hid, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hid == "0" and controllers == "":  # v2 (hybrid hosts mount it at unified/)
            base = root if (root / "cgroup.controllers").exists() else root / "unified"
            limit, usage = "memory.max", "memory.current"
        elif "memory" in controllers.split(","):
            base, limit, usage = root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes"
        else:
            continue
        here = base / path.lstrip("/")
        while True:
            lim, used = _read_int(here / limit), _read_int(here / usage)
            if lim is not None and lim < UNLIMITED and used is not None:
                found.append(max(lim - used, 0))
            if here == base or base not in here.parents:
                break
            here = here.parent
    return min(found) if found else None


def _slurm(env: Mapping[str, str]) -> int | None:
    node = env.get("SLURM_MEM_PER_NODE", "")
    if node.isdigit() and int(node) > 0:
        return int(node) * MB
    cpu, cpus = env.get("SLURM_MEM_PER_CPU", ""), env.get("SLURM_CPUS_ON_NODE", "")
    if cpu.isdigit() and cpus.isdigit() and int(cpu) > 0:
        return int(cpu) * int(cpus) * MB
    return None


def host_limit(
    *,
    meminfo: Path = Path("/proc/meminfo"),
    cgroup_root: Path = Path("/sys/fs/cgroup"),
    proc_cgroup: Path = Path("/proc/self/cgroup"),
    env: Mapping[str, str] | None = None,
    rss: int | None = None,
) -> tuple[int, str] | None:
    """(bytes this process may hold at its peak, where the smallest limit comes from)."""
    env = os.environ if env is None else env
    held = own_rss() if rss is None else rss
    limits = []
    avail = _meminfo(meminfo, "MemAvailable")
    if avail is not None:
        limits.append((avail + held, f"MemAvailable {avail / 2**30:.1f} GiB + this process"))
    free = _cgroup_free(cgroup_root, proc_cgroup)
    if free is not None:
        limits.append((free + held, f"cgroup limit, {free / 2**30:.1f} GiB free + this process"))
    job = _slurm(env)
    if job is not None:
        limits.append((job, f"SLURM allocation {job // MB} MB"))
    return min(limits) if limits else None


def device_limit(device: str) -> tuple[int, str] | None:
    """(free bytes on the run's GPU, "cuda free"), None on CPU."""
    if not str(device).startswith("cuda"):
        return None
    import torch

    free, total = torch.cuda.mem_get_info(torch.device(device))
    return free, f"torch.cuda.mem_get_info: {free / 2**30:.1f} of {total / 2**30:.1f} GiB free"
