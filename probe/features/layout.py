"""Each feature kind's row in the cache, from one sample through the encoder.

A pooled kind's row is D float32 values; a token kind's (`tokens`, `tokens.lN`) is T x D
float16, T the prefix tokens and the (pooled) patch grid. The encoder's one output per batch
is every kind's row flattened and concatenated (`Encoder.embed`), so a kind is a span of
columns there; its entry's `features.npy` is N x D, or N x T x D, and meta.json records the
layout of a token entry (`features: {shape, dtype}` and `tokens: {prefix, grid, patch_grid,
pool}`; `probe/features/meta.py`) while a pooled entry's meta.json is as it always was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from probe.core.errors import ProbeError
from probe.encoders.base import Encoder
from probe.encoders.tokens import STORE_BYTES, STORE_DTYPE, patch_grid, pool_tokens
from probe.features.batching import AdaptiveEmbed

POOLED_DTYPE = "float32"
POOLED_BYTES = 4


@dataclass(frozen=True)
class Layout:
    """One kind's row: its shape ((D,) or (T, D)), the dtype it is stored in and, for a token
    kind, how its T tokens are made (prefix count, stored grid, the model's patch grid, pool)."""

    shape: tuple[int, ...]
    dtype: str = POOLED_DTYPE
    tokens: dict[str, Any] | None = None

    @property
    def values(self) -> int:
        return math.prod(self.shape)

    @property
    def row_bytes(self) -> int:
        return self.values * (STORE_BYTES if self.dtype == STORE_DTYPE else POOLED_BYTES)

    def bytes_at(self, pool: int | None) -> int:
        """A row's bytes if the patch grid were pooled to `pool` (None: not pooled)."""
        if self.tokens is None:
            return self.row_bytes
        side = self.tokens["patch_grid"][0] if pool is None else int(pool)
        return (self.tokens["prefix"] + side * side) * self.shape[-1] * STORE_BYTES

    def key(self, n: int) -> dict[str, Any]:
        """The extraction key's (and meta.json's) fields for this layout: none for a pooled
        kind (its key and meta.json are what they were), `features` and `tokens` for tokens."""
        if self.tokens is None:
            return {}
        return {"features": {"shape": [n, *self.shape], "dtype": self.dtype},
                "tokens": self.tokens}  # fmt: skip


def layouts(encoder: Encoder, sample: torch.Tensor, *, desc: str) -> dict[str, Layout]:
    """Kind -> its row, from one transformed sample (C x H x W) through the encoder; a token
    pool that does not divide the patch grid is refused here, before any row is written."""
    out = AdaptiveEmbed(encoder, desc=desc, by_kind=True, pool=False)(sample.unsqueeze(0))
    found = {}
    for kind, feats in out.items():
        if feats.ndim == 2:
            found[kind] = Layout(shape=(int(feats.shape[1]),))
            continue
        prefix, pool = encoder.prefix_tokens, encoder.token_pool
        grid = patch_grid(int(feats.shape[1]), prefix, model=desc)
        stored = pool_tokens(feats, prefix=prefix, pool=pool, model=desc)
        side = patch_grid(int(stored.shape[1]), prefix, model=desc)
        tokens = {"prefix": prefix, "grid": [side, side], "patch_grid": [grid, grid],
                  "pool": pool}  # fmt: skip
        found[kind] = Layout(shape=tuple(int(d) for d in stored.shape[1:]), dtype=STORE_DTYPE,
                             tokens=tokens)  # fmt: skip
    if not found:
        raise ProbeError(f"{desc}: the encoder gave no features")
    return found
