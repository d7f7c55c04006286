"""Several real ranks of one gloo process group, started from a test: `spawn(fn, world, ...)`.

Each rank is a fresh interpreter (multiprocessing's spawn) with the environment torchrun
would give it (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so
`probe.features.distributed.setup` joins a real process group; `fn(rank, *args)` must be a
module-level function of a tests module. A rank's exception fails the test with its text.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from probe.datasets.base import Split
from probe.encoders.base import Encoder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(fn: Callable, rank: int, world: int, port: int, args: tuple, errors) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)})  # fmt: skip
    try:
        fn(rank, *args)
    except BaseException:  # noqa: BLE001 - reported to the test, which fails with it
        errors.put((rank, traceback.format_exc()))
        raise


def spawn(fn: Callable, world: int, *args: Any, timeout: float = 180.0) -> None:
    ctx = mp.get_context("spawn")
    errors = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_entry, args=(fn, r, world, port, args, errors))
             for r in range(world)]  # fmt: skip
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
        p.join()
    reports = []
    while not errors.empty():
        rank, text = errors.get()
        reports.append(f"rank {rank}:\n{text}")
    if reports or alive or any(p.exitcode for p in procs):
        codes = [p.exitcode for p in procs]
        raise AssertionError(f"ranks failed (exit codes {codes}):\n" + "\n".join(reports))


def row_split(n: int) -> Split:
    """n samples whose value is their index (labels: index mod 7)."""
    return Split(items=list(range(n)), labels=np.arange(n) % 7, load=float)


def _row(x: float) -> torch.Tensor:
    return torch.tensor([x, -x, 2 * x], dtype=torch.float32)


def _identity(b: torch.Tensor) -> torch.Tensor:
    return b


def row_encoder() -> Encoder:
    return Encoder(transform=_row, forward=_identity)
