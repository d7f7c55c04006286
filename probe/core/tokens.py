"""The token cache's names and grid maths, shared by every stage that sizes or checks it.

`tokens` and `tokens.lN` are the kinds whose rows are T x D (every token of a block after the
final norm, `probe/encoders/tokens.py`); T is the prefix tokens (class, registers) and the
g x g patch grid, or the G x G grid `encoder.token_pool=G` average-pools it to (G divides g).
The cache stores them as float16. Pure arithmetic (no torch): the launcher's dry run
(`probe/launch/sizes.py`) and the feature stage's checks use the same rules.
"""

from __future__ import annotations

import math
import re

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
