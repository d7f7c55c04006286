"""Free space on the cache's file system, and the token pool whose cache would fit in it.

Shared by the check a run makes before a token extraction (`probe/features/space.py`, from
the model's real token layout) and the grid's dry run (`probe/launch/sizes.py`, from the
configs): both measure `cache_dir`'s file system with `shutil.disk_usage` and refuse in one
line naming the largest `encoder.token_pool` whose cache fits.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from probe.core.errors import ProbeError
from probe.core.tokens import divisors


def size_text(n: int) -> str:
    """Bytes as GB, MB or kB (decimal, as disks are sold), one decimal."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1e3:.1f} kB"


def free_space(cache_dir: str | Path) -> tuple[int, Path]:
    """(free bytes, the directory measured): `cache_dir`, or its nearest existing parent when
    it is not made yet (the file system it will be made on)."""
    path = Path(cache_dir).expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return int(shutil.disk_usage(path).free), path


def pool_that_fits(
    need_at: Callable[[int | None], int], *, free: int, grid: int, current: int | None
) -> int | None:
    """The largest pool size below the current one (a divisor of the patch grid) whose cache
    fits in `free` bytes, or None when even one token per image does not."""
    for side in divisors(grid):
        if (current is None or side < current) and need_at(side) <= free:
            return side
    return None


def refuse_if_full(
    need_at: Callable[[int | None], int],
    *,
    cache_dir: str | Path,
    grid: int | None,
    current: int | None,
    what: str = "this run's token cache",
) -> None:
    """One line when `need_at(current)` bytes exceed the free space of `cache_dir`'s file
    system, naming the `encoder.token_pool` that would fit (`need_at(G)`: the bytes at G)."""
    free, where = free_space(cache_dir)
    need = need_at(current)
    if need <= free:
        return
    head = (f"{what} needs {size_text(need)} but the file system of cache_dir={cache_dir} "
            f"({where}) has {size_text(free)} free (shutil.disk_usage)")  # fmt: skip
    side = pool_that_fits(need_at, free=free, grid=grid, current=current) if grid else None
    if side is not None:
        raise ProbeError(f"{head}; set encoder.token_pool={side} ({size_text(need_at(side))}: "
                         f"{side} x {side} patch tokens an image), or free space, or set "
                         "cache_dir to a larger file system")  # fmt: skip
    tail = f"even encoder.token_pool=1 needs {size_text(need_at(1))}; " if grid else ""
    raise ProbeError(f"{head}; {tail}free space, or set cache_dir to a larger file system")
