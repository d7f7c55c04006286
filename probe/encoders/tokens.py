"""The `tokens` kinds: every token of one block after the final norm, optionally pooled.

`tokens` is the model's final token sequence after its final norm (the sequence `cls` and
`mean` are cut from, `probe/encoders/kinds.py`): the prefix tokens first (class, registers:
`Encoder.prefix_tokens` of them), then the patch tokens in raster order. `tokens.lN` is block
N's output after the same norm, as the layer kinds read it. They are cached as N x T x D
float16 (`probe/features/layout.py`), for the heads that attend over tokens (`eval=attentive`).

`encoder.token_pool=G` average-pools the g x g patch grid to G x G (G must divide g: each
output token is the plain mean of a (g/G) x (g/G) window, `torch.nn.functional.avg_pool2d`
with kernel = stride = g/G) and keeps the prefix tokens as they are: at L/14 and 336 px,
G=8 stores 1 + 64 tokens an image instead of 577. The names and the grid maths are
`probe/core/tokens.py`'s.
"""

from __future__ import annotations

import torch

from probe.core.tokens import (  # noqa: F401 - the encoders' names for them
    STORE_BYTES,
    STORE_DTYPE,
    TOKENS,
    check_pool,
    is_token_kind,
    patch_grid,
)


def pool_tokens(x: torch.Tensor, *, prefix: int, pool: int | None, model: str) -> torch.Tensor:
    """(B, P + g*g, D) -> (B, P + G*G, D): the patch grid average-pooled to G x G, the prefix
    tokens kept; `pool` None returns `x` unchanged."""
    if pool is None:
        return x
    grid = patch_grid(x.shape[1], prefix, model=model)
    check_pool(pool, grid, model=model)
    if pool == grid:
        return x
    b, d = x.shape[0], x.shape[2]
    patches = x[:, prefix:].reshape(b, grid, grid, d).permute(0, 3, 1, 2)
    pooled = torch.nn.functional.avg_pool2d(patches, kernel_size=grid // int(pool))
    return torch.cat([x[:, :prefix], pooled.flatten(2).transpose(1, 2)], dim=1)
