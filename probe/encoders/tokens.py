"""The `tokens` kinds: every token of one block after the final norm, optionally pooled.

`tokens` is the model's final token sequence after its final norm (the sequence `cls` and
`mean` are cut from, `probe/encoders/kinds.py`): the prefix tokens first (class, registers:
`Encoder.prefix_tokens` of them), then the patch tokens in raster order. `tokens.lN` is block
N's output after the same norm, as the layer kinds read it. They are cached as N x T x D
float16 (`probe/features/layout.py`), for the heads that attend over tokens (`eval=attentive`).

`encoder.token_pool=G` average-pools the g x g patch grid to G x G (G must divide g: each
output token is the plain mean of a (g/G) x (g/G) window, `torch.nn.functional.avg_pool2d`
with kernel = stride = g/G) and keeps the prefix tokens as they are: at L/14 and 336 px,
G=8 stores 1 + 64 tokens an image instead of 577.
"""

from __future__ import annotations

import math
import re

import torch

from probe.core.errors import ProbeError

TOKENS = "tokens"
TOKEN_KIND = re.compile(r"tokens(\.l(0|-?[1-9][0-9]*))?")
STORE_DTYPE = "float16"  # what the token cache holds (2 bytes a value; bf16 compute on GPU)
STORE_BYTES = 2


def is_token_kind(kind: object) -> bool:
    """`tokens` or `tokens.lN`: a kind whose rows are T x D, not D."""
    return isinstance(kind, str) and TOKEN_KIND.fullmatch(kind) is not None


def divisors(grid: int) -> list[int]:
    """The pool sizes a g x g grid takes, largest first."""
    return [d for d in range(grid, 0, -1) if grid % d == 0]


def check_pool(pool: int | None, grid: int, *, model: str) -> None:
    """A pool size that does not divide the patch grid: one line naming the ones that do."""
    if pool is None:
        return
    if not 1 <= int(pool) <= grid or grid % int(pool):
        raise ProbeError(
            f"encoder.token_pool={pool} does not divide the {grid} x {grid} patch grid of "
            f"{model}; use one of {', '.join(map(str, divisors(grid)))}"
        )


def patch_grid(tokens: int, prefix: int, *, model: str) -> int:
    """The side g of the square patch grid behind `tokens` tokens, `prefix` of them prefix."""
    patches = tokens - prefix
    side = math.isqrt(max(patches, 0))
    if patches < 1 or side * side != patches:
        raise ProbeError(
            f"{model}: {patches} patch tokens (after {prefix} prefix tokens) are not a square "
            "grid; the token cache needs square images (a crop in encoder.preprocess)"
        )
    return side


def stored_tokens(*, grid: int, prefix: int, pool: int | None) -> int:
    """Tokens an image in the cache: the prefix tokens and the (pooled) grid."""
    side = grid if pool is None else int(pool)
    return prefix + side * side


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
