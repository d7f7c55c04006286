"""Test-only encoder builders, selected with `encoder._target_=tests.stubs.NAME`.

Each wraps the real pixels encoder (so the loading path stays real) and adds one behaviour:
a per-batch delay (to kill a run mid-extraction), NaN rows, or CUDA-style out-of-memory
errors above a batch size.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch

from probe.encoders.base import Encoder
from probe.encoders.pixels import build as pixels


class _Slow:
    """Sleeps per batch; `PROBE_STUB_DELAY` overrides the delay without entering the cache
    fingerprint, so a deliberately slower job shares its entry with a normal one."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        time.sleep(float(os.environ.get("PROBE_STUB_DELAY", self.delay)))
        return batch.clone()


class _NaNAt:
    """NaN in row `row` of every batch larger than `row`."""

    def __init__(self, row: int) -> None:
        self.row = row

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        out = batch.clone()
        if len(out) > self.row:
            out[self.row, 0] = float("nan")
        return out


class OOMAbove:
    """Raises the error CUDA raises when a batch is larger than `max_batch`."""

    def __init__(self, forward: Any, max_batch: int) -> None:
        self.forward = forward
        self.max_batch = max_batch
        self.sizes: list[int] = []

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(batch))
        if len(batch) > self.max_batch:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.forward(batch)


def _with_forward(forward: Any, **kw: Any) -> Encoder:
    enc = pixels(**kw)
    enc.forward = forward
    return enc


def slow_pixels(*, delay: float = 0.02, **kw: Any) -> Encoder:
    return _with_forward(_Slow(delay), **kw)


def nan_pixels(*, nan_row: int = 3, **kw: Any) -> Encoder:
    return _with_forward(_NaNAt(nan_row), **kw)


def oom_pixels(*, max_batch: int = 4, **kw: Any) -> Encoder:
    enc = pixels(**kw)
    enc.forward = OOMAbove(enc.forward, max_batch)
    return enc
