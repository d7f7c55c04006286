"""Batched feature extraction of one source split into a cache entry: resumable, locked, sharded.

Decoding and preprocessing run in DataLoader workers (pinned memory on CUDA); rows are
written in place as they come (`probe/shards.py`), so host memory holds a few batches however
large the split is. The split is cut into shards; each finished shard is recorded with its
hash, so a killed extraction resumes from the last finished shard. Batches never straddle a
shard, so the batches (and the bits) are the same whether a split is extracted in one go,
resumed, or spread over torchrun ranks. One process per entry: the others wait on its lock.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from probe import shards
from probe.cache import CacheEntry, file_sha256, save_npy_atomic
from probe.datasets.base import Split
from probe.distributed import Context, all_ok, barrier, broadcast
from probe.encoders.base import Encoder
from probe.errors import ProbeError
from probe.lock import EntryLock

log = logging.getLogger(__name__)
DEFAULT_SHARD_SIZE = 8192
# torch >= 2.5 names it torch.OutOfMemoryError; older releases only torch.cuda.OutOfMemoryError
OOM_ERROR = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError


class _Samples(Dataset):
    """A Split viewed as a torch Dataset of (transformed sample, label)."""

    def __init__(self, split: Split, transform: Any) -> None:
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.split.load(self.split.items[i])), int(self.split.labels[i])


def resolve_num_workers(num_workers: Any, n_items: int, *, procs_per_node: int = 1) -> int:
    """`auto`: the CPUs this job was given (SLURM's count, else the process affinity).

    Under torchrun the node's CPUs are shared by its `procs_per_node` ranks.
    """
    if num_workers != "auto":
        n = int(num_workers)
        if n < 0:
            raise ProbeError(f"num_workers={n} must be >= 0 or 'auto'")
        return n
    if n_items < 4096:  # tiny splits: worker start-up costs more than it saves
        return 0
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    n = int(cpus) if cpus else len(os.sched_getaffinity(0))
    return max(0, min(n // max(procs_per_node, 1) - 1, 32))


class AdaptiveEmbed:
    """`encoder.embed` that halves the sub-batch on CUDA out-of-memory instead of dying.

    The smaller size sticks for the rest of the run (memory does not come back mid-run).
    """

    def __init__(self, encoder: Encoder, *, desc: str) -> None:
        self.encoder = encoder
        self.desc = desc
        self.limit: int | None = None

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        while True:
            step = self.limit or len(images)
            try:
                chunks = images.split(step)
                parts = [self.encoder.embed(chunk) for chunk in chunks]
                return torch.cat(parts).cpu().numpy()
            except OOM_ERROR as err:
                if step <= 1:
                    raise ProbeError(
                        f"{self.desc}: out of GPU memory even at batch size 1; use a GPU with "
                        "more memory or encoder.dtype=bfloat16"
                    ) from err
                self.limit = max(1, step // 2)
                log.warning("%s: out of GPU memory at batch %d, retrying at %d", self.desc, step,
                            self.limit)  # fmt: skip
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()


def compile_encoder(encoder: Encoder) -> Encoder:
    """torch.compile the model (or the forward function): worth it for long extractions."""
    net = getattr(encoder.forward, "net", None)
    if isinstance(net, torch.nn.Module):
        encoder.forward.net = torch.compile(net)
    else:
        encoder.forward = torch.compile(encoder.forward)
    return encoder


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
    finally:
        if lock is not None:
            lock.release()


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
        _Samples(split, encoder.transform),
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
    try:
        for (images, _labels), (shard, a, b, rows) in zip(loader, plan, strict=True):
            out = embed(images)
            if out.shape != (b - a, key["dim"]):
                raise RuntimeError(f"{desc}: encoder gave {out.shape} for rows {a}-{b - 1}")
            _check_finite(out, row=a, desc=desc)
            writer.write(a, out)
            if b == rows[1]:
                writer.end_shard(shard, *rows)
            bar.update(b - a)
    finally:
        bar.close()
        writer.close()


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
