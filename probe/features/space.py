"""Will the token cache fit? The check before a token extraction, and the pool that would fit.

A token entry is large: at L/14 and 336 px an image is 577 x 1,024 float16 values (1.2 MB),
CIFAR-100's train split about 59 GB. A cache entry's space is reserved up front
(`posix_fallocate`, `probe/features/shards.py`), so a full disk already fails before any row
is computed, but split by split: the train entry would be filled before the test entry found
no room. Before a run extracts any token kind, `check_space` adds up the bytes of every entry
it will write (every split, every kind: one sample through the encoder gives each row's
layout, `probe/features/layout.py`) and compares them with the free space of `cache_dir`'s
file system (`shutil.disk_usage`); a run that cannot fit stops in one line naming the largest
`encoder.token_pool` that would. The grid's dry run makes the same comparison from the
configs alone (`probe/launch/sizes.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probe.core.errors import ProbeError
from probe.core.space import refuse_if_full
from probe.core.tokens import is_token_kind
from probe.features.distributed import Context, broadcast
from probe.features.layout import Layout, layouts


def check_token_space(
    cfg: Any, dataset: Any, encoder: Any, todo: dict[str, dict[str, Any]], *, ctx: Context
) -> None:
    """`check_space` for the entries an extraction will fill (`todo`: split -> kind -> entry),
    when one is a token kind: rank 0 checks, every rank gets its verdict."""
    if not any(is_token_kind(k) for kinds in todo.values() for k in kinds):
        return
    answer: dict[str, Any] = {}
    if ctx.main:
        try:
            split = dataset.splits[next(iter(todo))]
            sample = encoder.transform(split.load(split.items[0]))
            found = layouts(encoder, sample, desc=f"{cfg.encoder.name}/{cfg.dataset.name}")
            rows = [(k, len(dataset.splits[s]), e.path) for s, es in todo.items()
                    for k, e in es.items()]  # fmt: skip
            check_space(cfg, layouts=found, rows=rows)
        except ProbeError as err:
            answer = {"error": str(err)}
    answer = broadcast(answer, ctx)
    if "error" in answer:
        raise ProbeError(answer["error"])


def check_space(cfg: Any, *, layouts: dict[str, Layout], rows: list[tuple[str, int, Path]]) -> None:
    """Before a token extraction: `rows` are (kind, rows, entry directory) of every entry it
    will write. An entry's existing `features.npy` (one being resumed, or rebuilt) counts as
    space it already holds. Checks the encoder config's `patch_size` and `prefix_tokens` (the
    dry run's sizes) against the model first."""
    tokens = [lay for lay in layouts.values() if lay.tokens is not None]
    if not tokens:
        return
    _check_config(cfg.encoder, tokens[0])
    held = sum(_size(path / "features.npy") for _, _, path in rows)
    current = cfg.encoder.get("token_pool")

    def need_at(pool: int | None) -> int:
        total = sum(n * layouts[kind].bytes_at(pool) for kind, n, _ in rows)
        return max(0, total - (held if pool == current else 0))

    refuse_if_full(need_at, cache_dir=cfg.cache_dir, grid=tokens[0].tokens["patch_grid"][0],
                   current=current)  # fmt: skip


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _check_config(encoder: Any, layout: Layout) -> None:
    """`patch_size`, `resolution` and `prefix_tokens` in the encoder config (what the dry run
    counts) against the tokens the model gives: a wrong entry would size every grid wrong."""
    grid, prefix = layout.tokens["patch_grid"][0], layout.tokens["prefix"]
    patch, res = encoder.get("patch_size"), encoder.get("resolution")
    if patch and res and int(res) // int(patch) != grid:
        raise ProbeError(
            f"encoder.patch_size={patch} at encoder.resolution={res} makes a "
            f"{int(res) // int(patch)} x {int(res) // int(patch)} patch grid, but "
            f"{encoder.get('name')} gives {grid} x {grid}; fix encoder.patch_size (or set null)"
        )
    said = encoder.get("prefix_tokens")
    if said is not None and int(said) != prefix:
        raise ProbeError(
            f"encoder.prefix_tokens={said} but {encoder.get('name')} puts {prefix} prefix tokens "
            f"(class, registers) before its patches; set encoder.prefix_tokens={prefix} (or null)"
        )
