"""`python -m probe.bench precomputed [--rows N --dim D | --npz FILE]`: how fast is an .npz copied?

Prints, in one run and on the same file, the rows/s of the two ways `encoder=precomputed`
can fill a cache entry from `dataset=npz`: row by row through the DataLoader (the generic
path, what every release before block copies ran) and in array blocks (what runs now); and,
as the ceiling, what the disk allows: a plain sequential read of the same member's bytes, and
a plain copy of them (read, write, fdatasync every 32 MiB, no hashing). Before each timed pass
the file's pages are dropped from the page cache (`posix_fadvise(DONTNEED)`, this file only),
so every pass reads from the disk. Both passes write a full cache entry (preallocated
features.npy, per-shard SHA-256, progress records, meta.json), exactly what `stage=extract`
writes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m probe.bench precomputed", description=__doc__)
    p.add_argument("--npz", type=Path, help="an existing .npz (x_train, y_train, x_test, ...)")
    p.add_argument("--rows", type=int, default=250_000, help="rows of a generated x_train")
    p.add_argument("--dim", type=int, default=1024, help="width of a generated x_train")
    p.add_argument("--num-workers", default="auto", help="the row path's DataLoader workers")
    p.add_argument("--skip-rows", action="store_true", help="time the block copy only")
    p.add_argument("--dir", type=Path, help="where the file and the entries go (a temp dir)")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    return p.parse_args(argv)


def make_npz(path: Path, *, rows: int, dim: int) -> Path:
    """An uncompressed .npz with `rows` x `dim` float32 train rows (written in chunks)."""
    rng = np.random.default_rng(0)
    x = np.lib.format.open_memmap(path.with_suffix(".x.npy"), mode="w+", dtype=np.float32,
                                  shape=(rows, dim))  # fmt: skip
    for a in range(0, rows, 16384):
        x[a : a + 16384] = rng.standard_normal((min(16384, rows - a), dim), dtype=np.float32)
    x.flush()
    y = (np.arange(rows) % 100).astype(np.int64)
    test = rng.standard_normal((1000, dim), dtype=np.float32)
    np.savez(path, x_train=x, y_train=y, x_test=test, y_test=np.arange(1000) % 100)
    del x
    path.with_suffix(".x.npy").unlink()
    return path


def drop_cache(path: Path) -> None:
    """Evict this file's pages, so the next read comes from the disk (nothing else is touched)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def disk_ceiling(path: Path, split, out: Path) -> tuple[float, float]:
    """rows/s of (reading the member's bytes in 64 MiB blocks; reading them and writing them to
    `out` with an fdatasync every 32 MiB, as a shard is flushed): what the disk allows."""
    arr = split.load.array
    step = max(1, (32 << 20) // (arr.shape[1] * arr.itemsize))
    drop_cache(path)
    start = time.perf_counter()
    for a in range(0, len(arr), 2 * step):
        np.array(arr[a : a + 2 * step])
    read = len(arr) / (time.perf_counter() - start)
    drop_cache(path)
    start = time.perf_counter()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for a in range(0, len(arr), step):
            os.write(fd, np.ascontiguousarray(arr[a : a + step], dtype=np.float32).data)
            os.fdatasync(fd)
    finally:
        os.close(fd)
    return read, len(arr) / (time.perf_counter() - start)


def copy(path: Path, split, encoder, entry: Path, *, workers) -> float:
    from probe.features.cache import CacheEntry
    from probe.features.extract import extract_split

    drop_cache(path)
    start = time.perf_counter()
    extract_split(encoder=encoder, split=split, entry=CacheEntry(entry, {"bench": True}),
                  batch_size=256, num_workers=workers, desc=entry.name)  # fmt: skip
    return len(split) / (time.perf_counter() - start)


def main(argv: list[str]) -> int:
    from probe.datasets.npz import build
    from probe.encoders.precomputed import build as precomputed

    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="probe-bench-", dir=args.dir) as tmp:
        path = args.npz or make_npz(Path(tmp) / "features.npz", rows=args.rows, dim=args.dim)
        split = build(path=str(path)).splits["train"]
        n, dim = split.load.array.shape
        gb = n * dim * 4 / 1e9
        print(f"{path}: x_train {n} x {dim} ({split.load.array.dtype}), {gb:.2f} GB as float32")
        encoder = precomputed()
        read, ceiling = disk_ceiling(path, split, Path(tmp) / "plain-copy.bin")
        blocks = copy(path, split, encoder, Path(tmp) / "blocks", workers=args.num_workers)
        rows = None
        if not args.skip_rows:
            per_row = dataclasses.replace(encoder, block=None)  # the DataLoader path
            rows = copy(path, split, per_row, Path(tmp) / "rows", workers=args.num_workers)
    out = {"rows": n, "dim": dim, "gb": round(gb, 3), "read_rows_per_s": round(read),
           "plain_copy_rows_per_s": round(ceiling),
           "block_rows_per_s": round(blocks),
           "row_rows_per_s": None if rows is None else round(rows)}  # fmt: skip

    def rate(r: float) -> str:
        return f"{r:12,.0f} rows/s ({r * dim * 4 / 1e9:.2f} GB/s)"

    print(f"sequential read          : {rate(read)}")
    print(f"plain copy (ceiling)     : {rate(ceiling)}: read, write, fdatasync per 32 MiB")
    print(f"block copy (now)         : {rate(blocks)}, {blocks / ceiling:.2f} of the plain copy")
    if rows is not None:
        print(f"row by row (before)      : {rate(rows)}; block copy is {blocks / rows:.1f}x faster")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0
