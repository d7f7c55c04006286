"""Batched feature extraction of one source split into a cache entry: resumable, locked, sharded.

Decoding and preprocessing run in DataLoader workers (pinned memory on CUDA); rows are
written in place as they come (`shards.py`), so host memory holds a few batches however
large the split is. The split is cut into shards; each finished shard is recorded with its
hash, so a killed extraction resumes from the last finished shard. Batches never straddle a
shard, so the batches (and the bits) are the same whether a split is extracted in one go,
resumed, or spread over torchrun ranks. One process per entry: the others wait on its lock.
A SIGTERM (SLURM's cancel, preemption, requeue, time limit) stops it at the next shard
boundary (`probe.core.preempt`): what is recorded is whole, and a rerun resumes from there.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from probe.core import preempt
from probe.core.errors import ProbeError
from probe.core.io import save_npy_atomic
from probe.datasets.base import Split
from probe.encoders.base import Encoder
from probe.features import shards
from probe.features.batching import AdaptiveEmbed, Samples, resolve_num_workers, to_host
from probe.features.cache import CacheEntry, file_sha256
from probe.features.distributed import Context, all_ok, barrier, broadcast
from probe.features.lock import EntryLock

log = logging.getLogger(__name__)
DEFAULT_SHARD_SIZE = 8192


def extract_split(
    *,
    encoder: Encoder,
    split: Split,
    entry: CacheEntry,
    batch_size: int,
    num_workers: Any,
    desc: str,
    shard_size: int = DEFAULT_SHARD_SIZE,
    ctx: Context | None = None,
    lock_timeout: float | None = 3600.0,
) -> dict[str, Any]:
    """Fill `entry` with the features of `split` (resuming a partial one); returns its meta.

    Every rank of `ctx` calls this; rank 0 holds the entry's lock, plans, and writes
    meta.json once all ranks have written their shards.
    """
    if batch_size <= 0:
        raise ProbeError(f"batch_size={batch_size} must be a positive integer, e.g. 256")
    if shard_size <= 0:
        raise ProbeError(f"extract.shard_size={shard_size} must be a positive integer")
    ctx = ctx or Context()
    if len(split) == 0:
        raise ProbeError(f"{desc}: the split is empty; check the dataset directory")
    lock = EntryLock(entry.lock_path, timeout=lock_timeout) if ctx.main else None
    try:
        plan = (
            _plan(encoder, split, entry, shard_size=shard_size, lock=lock, desc=desc)
            if ctx.main
            else None
        )
        plan = broadcast(plan, ctx)
        if "error" in plan:
            raise ProbeError(plan["error"]) if ctx.main else ProbeError(f"{desc}: rank 0 failed")
        if plan.get("cached"):
            return entry.meta() or {}
        with preempt.deferred(desc):  # from here a SIGTERM stops at the next shard boundary
            return _fill_and_finish(encoder, split, entry, plan=plan, batch_size=batch_size,
                                    num_workers=num_workers, desc=desc, ctx=ctx)  # fmt: skip
    finally:
        if lock is not None:
            lock.release()


def _fill_and_finish(
    encoder: Encoder,
    split: Split,
    entry: CacheEntry,
    *,
    plan: dict[str, Any],
    batch_size: int,
    num_workers: Any,
    desc: str,
    ctx: Context,
) -> dict[str, Any]:
    """Every rank writes its shards; once all have, rank 0 writes labels and meta.json."""
    start = time.perf_counter()
    error = None
    try:
        _fill(encoder, split, entry, key=plan["key"], todo=plan["todo"][ctx.rank :: ctx.world],
              batch_size=batch_size, num_workers=num_workers, desc=desc, ctx=ctx)  # fmt: skip
    except Exception as err:  # noqa: BLE001 - re-raised below, after telling the other ranks
        error = err
    ok = all_ok(error is None, ctx)
    if error is not None:
        raise error
    if not ok:
        raise ProbeError(f"{desc}: another rank failed; see its log")
    meta = _finish(split, entry, key=plan["key"], seconds=time.perf_counter() - start,
                   desc=desc) if ctx.main else {}  # fmt: skip
    barrier(ctx)
    return meta


def _plan(
    encoder: Encoder,
    split: Split,
    entry: CacheEntry,
    *,
    shard_size: int,
    lock: EntryLock,
    desc: str,
) -> dict[str, Any]:
    """Rank 0: take the lock, then reuse a finished entry, resume a partial one, or start one."""
    try:
        try:
            lock.acquire()
        except OSError as err:
            raise shards.disk_error(err, entry.lock_path) from err
        if entry.is_complete(n=len(split), content_hash=split.content_hash()):
            log.info("%s: filled meanwhile by another job; using it", entry.path)
            return {"cached": True}
        key = {
            "n": len(split),
            "dim": _feature_dim(encoder, split, desc),
            "shard_size": shard_size,
            "content_hash": split.content_hash(),
            "fingerprint": entry.fingerprint,
        }
        done = shards.prepare(entry.path, key=key)
        n_shards = len(shards.shard_ranges(key["n"], shard_size))
        todo = [i for i in range(n_shards) if i not in done]
        return {"key": json_safe(key), "todo": todo}
    except ProbeError as err:
        return {"error": str(err)}


def json_safe(obj: Any) -> Any:
    import json

    return json.loads(json.dumps(obj, default=str))


def _feature_dim(encoder: Encoder, split: Split, desc: str) -> int:
    """One sample through the encoder: the width of the output array to preallocate."""
    sample = encoder.transform(split.load(split.items[0])).unsqueeze(0)
    return int(AdaptiveEmbed(encoder, desc=desc)(sample).shape[1])


def _batches(todo: list[int], *, n: int, shard_size: int, batch_size: int) -> list[tuple]:
    """(shard, first row, stop row, shard rows) per batch; batches never cross a shard edge."""
    ranges = shards.shard_ranges(n, shard_size)
    out = []
    for i in todo:
        a, b = ranges[i]
        out += [(i, s, min(s + batch_size, b), (a, b)) for s in range(a, b, batch_size)]
    return out


def _fill(
    encoder: Encoder,
    split: Split,
    entry: CacheEntry,
    *,
    key: dict[str, Any],
    todo: list[int],
    batch_size: int,
    num_workers: Any,
    desc: str,
    ctx: Context,
) -> None:
    """This rank's shards: decode in workers, embed, check, write in place, record."""
    plan = _batches(todo, n=key["n"], shard_size=key["shard_size"], batch_size=batch_size)
    if not plan:
        return
    workers = resolve_num_workers(num_workers, key["n"], procs_per_node=ctx.local_world)
    loader = DataLoader(
        Samples(split, encoder.transform),
        batch_sampler=[list(range(a, b)) for _, a, b, _ in plan],
        num_workers=workers,
        pin_memory=str(encoder.device).startswith("cuda"),
        prefetch_factor=4 if workers else None,
    )
    embed = AdaptiveEmbed(encoder, desc=desc)
    writer = shards.ShardWriter(entry.path, dim=key["dim"])
    total = sum(b - a for _, a, b, _ in plan)
    bar = tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, mininterval=1.0,
               disable=not ctx.main)  # fmt: skip
    pending = None
    try:
        for (images, _labels), where in zip(loader, plan, strict=True):
            launched = (to_host(embed(images)), where)  # queued; the GPU runs on meanwhile
            if pending is not None:
                bar.update(_land(*pending, writer=writer, key=key, desc=desc))
            pending = launched
        if pending is not None:
            bar.update(_land(*pending, writer=writer, key=key, desc=desc))
    except Exception:
        # SIGTERM reaches the workers too where they are not forked (or SLURM kills them):
        # their death is then part of the stop, not an error of its own
        preempt.checkpoint(f"{desc}: stopped while a shard was being written (it is redone)")
        raise
    finally:
        bar.close()
        writer.close()


def _land(
    host: tuple[torch.Tensor, Any],
    where: tuple,
    *,
    writer: shards.ShardWriter,
    key: dict[str, Any],
    desc: str,
) -> int:
    """Wait for one batch's features, check them, write them, record a finished shard."""
    tensor, done = host
    if done is not None:
        done.synchronize()
    out = tensor.numpy()
    shard, a, b, rows = where
    if out.shape != (b - a, key["dim"]):
        raise RuntimeError(f"{desc}: encoder gave {out.shape} for rows {a}-{b - 1}")
    _check_finite(out, row=a, desc=desc)
    writer.write(a, out)
    if b == rows[1]:
        writer.end_shard(shard, *rows)
        preempt.checkpoint(f"{desc}: stopped at a shard boundary, after recording rows "
                           f"{rows[0]}-{rows[1] - 1} (shard {shard})")  # fmt: skip
    return b - a


def _finish(
    split: Split, entry: CacheEntry, *, key: dict[str, Any], seconds: float, desc: str
) -> dict[str, Any]:
    """Rank 0, all shards recorded: labels, then meta.json (atomic, last), then tidy up."""
    checksum = shards.finalize(entry.path, key=key)
    save_npy_atomic(entry.path / "labels.npy", split.labels)
    checksum["labels"] = file_sha256(entry.path / "labels.npy")
    n, dim = key["n"], key["dim"]
    meta = {
        "n": n,
        "dim": dim,
        "dtype": "float32",
        "content_hash": key["content_hash"],
        "seconds": round(seconds, 3),
        "images_per_second": round(n / max(seconds, 1e-9), 1),
        "checksum": checksum,
    }
    entry.finish(meta)
    shards.cleanup(entry.path)
    log.info("%s: %d x %d features in %.1fs (%s)", desc, n, dim, seconds, entry.path)
    return {**meta, "fingerprint": entry.fingerprint}


def _check_finite(out: np.ndarray, *, row: int, desc: str) -> None:
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        first = row + int(np.flatnonzero(bad)[0])
        raise ProbeError(
            f"{desc}: the encoder produced NaN or infinite features (first bad row {first}); "
            "try encoder.dtype=float32"
        )
