"""Test-only encoder builders, selected with `encoder._target_=tests.stubs.NAME`.

Each wraps the real pixels encoder (so the loading path stays real) and adds one behaviour:
a per-batch delay (to kill a run mid-extraction), NaN rows, CUDA-style out-of-memory errors
above a batch size, or (slowly) tokens: a prefix token and 16 patch tokens of every image.
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


class _SlowTokens(_Slow):
    """A pixel row as (1 + 16, D) tokens: its mean first (a prefix token), then 16 patches."""

    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        patches = super().__call__(batch).reshape(len(batch), 16, -1)
        return {"tokens": torch.cat([patches.mean(1, keepdim=True), patches], dim=1)}


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


def slow_tokens(*, delay: float = 0.02, token_pool: int | None = None, **kw: Any) -> Encoder:
    """`encoder.feature=tokens` of a 4 x 4 patch grid with one prefix token, slowly."""
    enc = _with_forward(_SlowTokens(delay), **kw)
    enc.kinds, enc.prefix_tokens, enc.token_pool = ("tokens",), 1, token_pool
    return enc


def nan_pixels(*, nan_row: int = 3, **kw: Any) -> Encoder:
    return _with_forward(_NaNAt(nan_row), **kw)


def oom_pixels(*, max_batch: int = 4, **kw: Any) -> Encoder:
    enc = pixels(**kw)
    enc.forward = OOMAbove(enc.forward, max_batch)
    return enc
