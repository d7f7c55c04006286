"""Batched feature extraction of one source split into a cache entry: resumable, locked, sharded.

Decoding and preprocessing run in DataLoader workers (pinned memory on CUDA) whose buffered
batches fit `extract.prefetch_mb` (`loader.py`; rows that already are features are copied in
array blocks instead); rows are written in place as they come (`shards.py`), so host memory
holds a budgeted number of batches however large the split is. The split is cut into shards
(`plan.py` decides which are still to do); each finished shard is recorded with its hash,
so a killed extraction resumes from the last finished shard. Batches never straddle a
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
from tqdm.auto import tqdm

from probe.core import preempt
from probe.core.errors import ProbeError
from probe.core.io import save_npy_atomic
from probe.datasets.base import Split
from probe.encoders.base import Encoder
from probe.features import loader, shards
from probe.features.batching import AdaptiveEmbed, resolve_num_workers
from probe.features.cache import CacheEntry, file_sha256, label_layout
from probe.features.distributed import Context, all_gather, all_ok, barrier, broadcast
from probe.features.lock import EntryLock
from probe.features.meta import feature_shape
from probe.features.plan import make_plan

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
    prefetch_mb: float = loader.DEFAULT_PREFETCH_MB,
    about: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Fill every entry (feature kind -> entry, resuming partial ones) in one pass over `split`.

    Every rank of `ctx` calls this; rank 0 holds the entries' locks, plans, and writes each
    meta.json once all ranks have written their shards (their hashes come over the process
    group). `about` (the dataset's facts) goes into meta.json, for a probe stage that reads
    only the cache. Returns kind -> meta.
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
        plan = make_plan(encoder, split, entries, shard_size=shard_size, locks=locks,
                         desc=desc) if ctx.main else None  # fmt: skip
        plan = broadcast(plan, ctx)
        if "error" in plan:
            raise ProbeError(plan["error"]) if ctx.main else ProbeError(f"{desc}: rank 0 failed")
        todo = {k: entries[k] for k in plan["keys"]}
        if todo:
            with preempt.deferred(desc):  # from here a SIGTERM stops at the next shard boundary
                _run(encoder, split, todo, plan=plan, desc=desc, ctx=ctx, about=about,
                     load={"batch_size": batch_size, "num_workers": num_workers,
                           "prefetch_mb": prefetch_mb})  # fmt: skip
        return {k: e.meta() or {} for k, e in entries.items()}
    finally:
        for lock in reversed(locks):
            lock.release()


def _run(encoder, split, entries, *, plan, desc, ctx, about, load) -> None:
    """Every rank fills its shards; rank 0 finishes each entry once all ranks have, from the
    shard hashes every rank sends it (no directory listing: see `shards.py`)."""
    start = time.perf_counter()
    error, written = None, {}
    try:
        written = _fill(encoder, split, entries, plan=plan, desc=desc, ctx=ctx, **load)
    except Exception as err:  # noqa: BLE001 - re-raised below, after telling the other ranks
        error = err
    ok = all_ok(error is None, ctx)
    if error is not None:
        raise error
    if not ok:
        raise ProbeError(f"{desc}: another rank failed; see its log")
    reported = all_gather(written, ctx)
    if ctx.main:
        seconds = time.perf_counter() - start
        for kind, entry in entries.items():
            hashes = dict(plan["done"][kind])
            for rank in reported:
                hashes.update(rank.get(kind, {}))
            _finish(split, entry, key=plan["keys"][kind], hashes=hashes, seconds=seconds,
                    about=about, desc=f"{desc}{f' [{kind}]' if kind else ''}")  # fmt: skip
    barrier(ctx)


def _fill(
    encoder: Encoder,
    split: Split,
    entries: dict[str, CacheEntry],
    *,
    plan: dict[str, Any],
    batch_size: int,
    num_workers: Any,
    prefetch_mb: float,
    desc: str,
    ctx: Context,
) -> dict[str, dict[int, str]]:
    """This rank's shards: load (budgeted), embed once, check, write to every entry, record.

    Returns kind -> {shard: hash} of the shards this rank wrote.
    """
    n, shard_size = len(split), next(iter(plan["keys"].values()))["shard_size"]
    mine = plan["shards"][ctx.rank :: ctx.world]
    read = loader.block_reader(split, encoder)
    rows = batch_size if read is None else loader.block_rows(plan["columns"]["width"], prefetch_mb)
    batches = loader.batch_ranges(mine, n=n, shard_size=shard_size, batch_size=rows)
    if not batches:
        return {}
    if read is not None:
        stream = loader.blocks(read, batches)
    else:
        prefetch = loader.prefetch_plan(
            workers=resolve_num_workers(num_workers, n, procs_per_node=ctx.local_world),
            batch_bytes=batch_size * plan["columns"]["sample_bytes"],
            budget_mb=prefetch_mb, desc=desc,
        )  # fmt: skip
        samples = loader.sample_loader(split, encoder.transform, batches, prefetch=prefetch,
                                       pin=str(encoder.device).startswith("cuda"), desc=desc,
                                       shape=plan["columns"].get("sample_shape"))  # fmt: skip
        stream = loader.embedded(samples, batches, AdaptiveEmbed(encoder, desc=desc))
    writers = {k: _writer(e, plan["keys"][k]) for k, e in entries.items()}
    bar = tqdm(total=sum(b - a for _, a, b, _ in batches), desc=desc, unit="img",
               dynamic_ncols=True, mininterval=1.0, disable=not ctx.main)  # fmt: skip
    try:
        _drain(stream, writers=writers, plan=plan, desc=desc, bar=bar, ahead=read is None)
    finally:
        stream.close()  # a generator: stops its read-ahead thread or loader workers now
        bar.close()
        for writer in writers.values():
            writer.close()
    return {k: w.hashes for k, w in writers.items()}


def _writer(entry: CacheEntry, key: dict[str, Any]) -> shards.ShardWriter:
    """The entry's writer: rows of D float32, or T x D float16 for a token kind."""
    layout = feature_shape(key)
    return shards.ShardWriter(entry.path, dim=shards.row_values(layout), dtype=layout[1])


def _drain(stream, *, writers, plan, desc, bar, ahead: bool) -> None:
    """Land each batch; with `ahead`, one step behind the stream, so the device computes the
    next batch meanwhile (block copies have no device to wait for)."""
    land = {"writers": writers, "plan": plan, "desc": desc}
    pending = None
    try:
        for launched in stream:
            if pending is not None:
                bar.update(_land(*pending, **land))
            pending = launched
            if not ahead:
                bar.update(_land(*pending, **land))
                pending = None
        if pending is not None:
            bar.update(_land(*pending, **land))
    except Exception:
        # SIGTERM reaches the workers too where they are not forked (or SLURM kills them):
        # their death is then part of the stop, not an error of its own
        preempt.checkpoint(f"{desc}: stopped while a shard was being written (it is redone)")
        raise


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
    out = tensor.numpy() if isinstance(tensor, torch.Tensor) else tensor
    shard, a, b, rows = where
    if out.shape != (b - a, plan["columns"]["width"]):
        raise RuntimeError(f"{desc}: encoder gave {out.shape} for rows {a}-{b - 1}")
    _check_finite(out, row=a, desc=desc)
    for kind, writer in writers.items():
        if shard not in plan["todo"][kind]:
            continue
        start, stop = plan["columns"]["spans"][kind]
        rows_out = out[:, start:stop]
        if writer.dtype != rows_out.dtype:  # the token cache's float16
            rows_out = rows_out.astype(writer.dtype)
            _check_finite(rows_out, row=a, desc=desc, stored=str(writer.dtype))
        writer.write(a, rows_out)
        if b == rows[1]:
            writer.end_shard(shard, *rows)
    if b == rows[1]:
        preempt.checkpoint(f"{desc}: stopped at a shard boundary, after recording rows "
                           f"{rows[0]}-{rows[1] - 1} (shard {shard})")  # fmt: skip
    return b - a


def _finish(
    split: Split,
    entry: CacheEntry,
    *,
    key: dict[str, Any],
    hashes: dict[int, str],
    seconds: float,
    about: dict[str, Any] | None,
    desc: str,
) -> dict[str, Any]:
    """Rank 0, all shards written: labels, then meta.json (atomic, last), then tidy up."""
    checksum = shards.finalize(entry.path, key=key, hashes=hashes)
    save_npy_atomic(entry.path / "labels.npy", split.labels)
    checksum["labels"] = file_sha256(entry.path / "labels.npy")
    n, dim = key["n"], key["dim"]
    shape, dtype = feature_shape(key)
    meta = {
        "n": n,
        "dim": dim,
        "dtype": str(dtype),
        "content_hash": key["content_hash"],
        "seconds": round(seconds, 3),
        "images_per_second": round(n / max(seconds, 1e-9), 1),
        "checksum": checksum,
    }
    if split.labels.ndim != 1:  # multi-label (N x K); a single-label entry's meta is as it was
        meta["labels"] = label_layout(split.labels)
    meta.update({k: key[k] for k in ("features", "tokens") if k in key})  # the token cache
    if about is not None:
        meta["dataset"] = about
    entry.finish(meta)
    shards.cleanup(entry.path)
    log.info("%s: %s features in %.1fs (%s)", desc, " x ".join(map(str, shape)), seconds,
             entry.path)  # fmt: skip
    return {**meta, "fingerprint": entry.fingerprint}


def _check_finite(out: np.ndarray, *, row: int, desc: str, stored: str | None = None) -> None:
    """NaN or inf in a batch stops the extraction; `stored`: in the rows as cast for the cache
    (float16: finite float32 values beyond its range, 65504, become inf)."""
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        first = row + int(np.flatnonzero(bad)[0])
        if stored is not None:
            raise ProbeError(
                f"{desc}: token features beyond {stored}'s range (|x| > "
                f"{float(np.finfo(stored).max):.0f}; first bad row {first}); the token cache "
                "stores float16: use a pooled kind (encoder.feature=cls or mean) for this model"
            )
        raise ProbeError(
            f"{desc}: the encoder produced NaN or infinite features (first bad row {first}); "
            "try encoder.dtype=float32"
        )
