"""Several processes on one extraction: `torchrun --nproc_per_node=N -m probe stage=extract ...`.

torchrun (or `srun` + torchrun across nodes) starts one process per GPU and sets RANK,
WORLD_SIZE, LOCAL_RANK and the rendezvous address; we join the process group (NCCL on GPUs,
gloo on CPU, so tests run it here) and split each split's shards round-robin over the ranks.
A plain `python -m probe` is world size 1 and never touches torch.distributed.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def env_context() -> Context:
    """What torchrun told this process (world size 1 without torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    return Context(
        rank=int(os.environ["RANK"]),
        world=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
    )


def setup(device: str, *, timeout_s: float = 7200.0) -> tuple[Context, str]:
    """Join the process group if torchrun started us; returns the context and this rank's device.

    The generous timeout covers ranks waiting at a barrier while rank 0 waits for the cache
    lock of another job or verifies a large entry.
    """
    ctx = env_context()
    if not ctx.active:
        return ctx, device
    if str(device).startswith("cuda"):
        device = f"cuda:{ctx.local_rank}"
        torch.cuda.set_device(ctx.local_rank)
    if not dist.is_initialized():
        backend = "nccl" if str(device).startswith("cuda") else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
        log.info("rank %d/%d joined the %s process group", ctx.rank, ctx.world, backend)
    return ctx, device


def broadcast(obj: Any, ctx: Context) -> Any:
    """Rank 0's `obj` on every rank (a JSON-able plan, a list of split names)."""
    if not ctx.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(obj: Any, ctx: Context) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank (picklable objects)."""
    if not ctx.active:
        return [obj]
    gathered: list[Any] = [None] * ctx.world
    dist.all_gather_object(gathered, obj)
    return gathered


def all_ok(ok: bool, ctx: Context) -> bool:
    """True on every rank iff every rank says ok: a failing rank never leaves others hanging."""
    return all(all_gather(ok, ctx))


def barrier(ctx: Context) -> None:
    if ctx.active:
        dist.barrier()


def teardown(ctx: Context) -> None:
    if ctx.active and dist.is_initialized():
        dist.destroy_process_group()
