"""Batched feature extraction of one source split into a cache entry: resumable, locked, sharded.

Decoding and preprocessing run in DataLoader workers (pinned memory on CUDA); rows are
written in place as they come (`shards.py`), so host memory holds a few batches however
large the split is. The split is cut into shards; each finished shard is recorded with its
hash, so a killed extraction resumes from the last finished shard. Batches never straddle a
shard, so the batches (and the bits) are the same whether a split is extracted in one go,
resumed, or spread over torchrun ranks. One process per entry: the others wait on its lock.
Several entries (the feature kinds of one encoder) fill from one pass over the images: each
keeps its own shards and records, and a batch is written to every entry still missing it.
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


def extract_split(*, encoder: Encoder, split: Split, entry: CacheEntry, **kw: Any) -> dict:
    """Fill `entry` with the encoder's (only) feature of `split`; returns its meta."""
    return extract_entries(encoder=encoder, split=split, entries={"": entry}, **kw)[""]


def extract_entries(
    *,
    encoder: Encoder,
    split: Split,
    entries: dict[str, CacheEntry],
    batch_size: int,
    num_workers: Any,
    desc: str,
    shard_size: int = DEFAULT_SHARD_SIZE,
    ctx: Context | None = None,
    lock_timeout: float | None = 3600.0,
) -> dict[str, dict[str, Any]]:
    """Fill every entry (feature kind -> entry, resuming partial ones) in one pass over `split`.

    Every rank of `ctx` calls this; rank 0 holds the entries' locks, plans, and writes each
    meta.json once all ranks have written their shards. Returns kind -> meta.
    """
    if batch_size <= 0:
        raise ProbeError(f"batch_size={batch_size} must be a positive integer, e.g. 256")
    if shard_size <= 0:
        raise ProbeError(f"extract.shard_size={shard_size} must be a positive integer")
    ctx = ctx or Context()
    if len(split) == 0:
        raise ProbeError(f"{desc}: the split is empty; check the dataset directory")
    paths = sorted(e.lock_path for e in entries.values())  # one lock order for every job
    locks = [EntryLock(p, timeout=lock_timeout) for p in paths] if ctx.main else []
    try:
        plan = _plan(encoder, split, entries, shard_size=shard_size, locks=locks,
                     desc=desc) if ctx.main else None  # fmt: skip
        plan = broadcast(plan, ctx)
        if "error" in plan:
            raise ProbeError(plan["error"]) if ctx.main else ProbeError(f"{desc}: rank 0 failed")
        todo = {k: entries[k] for k in plan["keys"]}
        if todo:
            with preempt.deferred(desc):  # from here a SIGTERM stops at the next shard boundary
                _run(encoder, split, todo, plan=plan, batch_size=batch_size,
                     num_workers=num_workers, desc=desc, ctx=ctx)  # fmt: skip
        return {k: e.meta() or {} for k, e in entries.items()}
    finally:
        for lock in reversed(locks):
            lock.release()


def _run(encoder, split, entries, *, plan, batch_size, num_workers, desc, ctx) -> None:
    """Every rank fills its shards; rank 0 finishes each entry once all ranks have."""
    start = time.perf_counter()
    error = None
    try:
        _fill(encoder, split, entries, plan=plan, batch_size=batch_size,
              num_workers=num_workers, desc=desc, ctx=ctx)  # fmt: skip
    except Exception as err:  # noqa: BLE001 - re-raised below, after telling the other ranks
        error = err
    ok = all_ok(error is None, ctx)
    if error is not None:
        raise error
    if not ok:
        raise ProbeError(f"{desc}: another rank failed; see its log")
    if ctx.main:
        seconds = time.perf_counter() - start
        for kind, entry in entries.items():
            _finish(split, entry, key=plan["keys"][kind], seconds=seconds,
                    desc=f"{desc}{f' [{kind}]' if kind else ''}")  # fmt: skip
    barrier(ctx)


def _plan(
    encoder: Encoder,
    split: Split,
    entries: dict[str, CacheEntry],
    *,
    shard_size: int,
    locks: list[EntryLock],
    desc: str,
) -> dict[str, Any]:
    """Rank 0: take the locks, then reuse finished entries, resume partial ones, start the rest.

    Returns per entry still to fill its key and shards to do, the columns of its kind in the
    encoder's output, and the union of shards to run.
    """
    try:
        for lock in locks:
            try:
                lock.acquire()
            except OSError as err:
                raise shards.disk_error(err, lock.path) from err
        todo = {k: e for k, e in entries.items()
                if not e.is_complete(n=len(split), content_hash=split.content_hash())}  # fmt: skip
        for kind in entries.keys() - todo.keys():
            log.info("%s: filled meanwhile by another job; using it", entries[kind].path)
        if not todo:
            return {"keys": {}, "todo": {}, "shards": []}
        columns = _columns(encoder, split, list(todo), desc)
        keys, shard_todo = {}, {}
        for kind, entry in todo.items():
            start, stop = columns["spans"][kind]
            key = {"n": len(split), "dim": stop - start,
                   "shard_size": shard_size, "content_hash": split.content_hash(),
                   "fingerprint": entry.fingerprint}  # fmt: skip
            done = shards.prepare(entry.path, key=key)
            n_shards = len(shards.shard_ranges(key["n"], shard_size))
            keys[kind] = json_safe(key)
            shard_todo[kind] = [i for i in range(n_shards) if i not in done]
        union = sorted(set().union(*shard_todo.values()))
        return {"keys": keys, "todo": shard_todo, "columns": columns, "shards": union}
    except ProbeError as err:
        return {"error": str(err)}


def json_safe(obj: Any) -> Any:
    import json

    return json.loads(json.dumps(obj, default=str))


def _columns(encoder: Encoder, split: Split, kinds: list[str], desc: str) -> dict[str, Any]:
    """One sample through the encoder: each kind's [start, stop) columns in `embed`'s output.

    An encoder with one output fills any single entry (the unnamed kind ``""`` of pixels).
    """
    sample = encoder.transform(split.load(split.items[0])).unsqueeze(0)
    spans, width = {}, 0
    for name, feats in AdaptiveEmbed(encoder, desc=desc, by_kind=True)(sample).items():
        spans[name], width = [width, width + int(feats.shape[1])], width + int(feats.shape[1])
    only = [0, width] if len(spans) == 1 else None
    out = {}
    for kind in kinds:
        out[kind] = spans.get(kind, only)
        if out[kind] is None:
            raise ProbeError(f"{desc}: the encoder gives {list(spans)}, not the kind {kind!r}")
    return {"spans": out, "width": width}


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
    entries: dict[str, CacheEntry],
    *,
    plan: dict[str, Any],
    batch_size: int,
    num_workers: Any,
    desc: str,
    ctx: Context,
) -> None:
    """This rank's shards: decode in workers, embed once, check, write to every entry, record."""
    n, shard_size = len(split), next(iter(plan["keys"].values()))["shard_size"]
    batches = _batches(plan["shards"][ctx.rank :: ctx.world], n=n, shard_size=shard_size,
                       batch_size=batch_size)  # fmt: skip
    if not batches:
        return
    workers = resolve_num_workers(num_workers, n, procs_per_node=ctx.local_world)
    loader = DataLoader(
        Samples(split, encoder.transform),
        batch_sampler=[list(range(a, b)) for _, a, b, _ in batches],
        num_workers=workers,
        pin_memory=str(encoder.device).startswith("cuda"),
        prefetch_factor=4 if workers else None,
    )
    embed = AdaptiveEmbed(encoder, desc=desc)
    writers = {
        k: shards.ShardWriter(e.path, dim=plan["keys"][k]["dim"]) for k, e in entries.items()
    }
    total = sum(b - a for _, a, b, _ in batches)
    bar = tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, mininterval=1.0,
               disable=not ctx.main)  # fmt: skip
    land = {"writers": writers, "plan": plan, "desc": desc}
    pending = None
    try:
        for (images, _labels), where in zip(loader, batches, strict=True):
            launched = (to_host(embed(images)), where)  # queued; the GPU runs on meanwhile
            if pending is not None:
                bar.update(_land(*pending, **land))
            pending = launched
        if pending is not None:
            bar.update(_land(*pending, **land))
    except Exception:
        # SIGTERM reaches the workers too where they are not forked (or SLURM kills them):
        # their death is then part of the stop, not an error of its own
        preempt.checkpoint(f"{desc}: stopped while a shard was being written (it is redone)")
        raise
    finally:
        bar.close()
        for writer in writers.values():
            writer.close()


def _land(
    host: tuple[torch.Tensor, Any],
    where: tuple,
    *,
    writers: dict[str, shards.ShardWriter],
    plan: dict[str, Any],
    desc: str,
) -> int:
    """Wait for one batch's features, check them, write each kind's columns to its entry."""
    tensor, done = host
    if done is not None:
        done.synchronize()
    out = tensor.numpy()
    shard, a, b, rows = where
    if out.shape != (b - a, plan["columns"]["width"]):
        raise RuntimeError(f"{desc}: encoder gave {out.shape} for rows {a}-{b - 1}")
    _check_finite(out, row=a, desc=desc)
    for kind, writer in writers.items():
        if shard not in plan["todo"][kind]:
            continue
        start, stop = plan["columns"]["spans"][kind]
        writer.write(a, out[:, start:stop])
        if b == rows[1]:
            writer.end_shard(shard, *rows)
    if b == rows[1]:
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
