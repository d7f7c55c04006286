"""Shards of a cache entry being filled: the resumable, checksummed on-disk state.

A split of N rows is cut into shards of `shard_size` rows. While an entry is unfinished it
holds

    features.npy    N x D float32 (N x T x D float16 for the token cache: the key's
                    `features` block), preallocated (so a full disk fails up front), filled in
                    place row range by row range with pwrite; never read without meta.json
    partial.json    what is being written (fingerprint, n, dim, shard_size, the layout): a
                    rerun resumes only an extraction of exactly the same thing
    progress/       one small JSON per finished shard: rows and the SHA-256 of their bytes,
                    written (atomically) only after the rows are on disk

A rerun after a crash keeps every recorded shard whose bytes still hash to the record and
extracts the rest. The per-shard hashes are computed from the rows as they are written (no
second read) and end up in meta.json, where they verify the entry each time it is used.
The process that finishes an entry takes the hashes from its plan (shards resumed) and from
the writers themselves (over the process group under torchrun), never from a listing of
`progress/`: on a shared filesystem another node's fresh records may not be visible yet
(NFS caches directory attributes), and the records exist for resuming only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.format import open_memmap

from probe.core.errors import ProbeError
from probe.core.io import disk_error
from probe.features.meta import feature_shape

Layout = tuple[tuple[int, ...], np.dtype]  # features.npy's shape and dtype (`meta.feature_shape`)

log = logging.getLogger(__name__)
PARTIAL = "partial.json"
PROGRESS = "progress"
HASH = "sha256"
_CHUNK = 1 << 24


def shard_ranges(n: int, shard_size: int) -> list[tuple[int, int]]:
    return [(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]


def data_offset(path: Path) -> int:
    """Byte offset of the first row in a .npy file (after its header)."""
    return int(np.load(path, mmap_mode="r", allow_pickle=False).offset)


def row_values(layout: Layout) -> int:
    """Values in one row: D, or T x D for the token cache."""
    return int(np.prod(layout[0][1:], dtype=np.int64))


def hash_rows(
    path: Path, start: int, stop: int, *, dim: int, offset: int, dtype: Any = np.float32
) -> str:
    """SHA-256 of rows [start, stop) of a .npy of `dim` values a row (float32, or the token
    cache's float16), hashed straight from the page cache."""
    h = hashlib.new(HASH)
    if stop <= start:
        return h.hexdigest()
    arr = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(stop, dim))
    step = max(1, _CHUNK // (dim * arr.itemsize))
    for a in range(start, stop, step):
        h.update(memoryview(np.ascontiguousarray(arr[a : min(a + step, stop)])).cast("B"))
    del arr
    return h.hexdigest()


def progress_records(entry: Path) -> dict[int, dict[str, Any]]:
    out = {}
    for p in sorted((entry / PROGRESS).glob("*.json")):
        try:
            rec = json.loads(p.read_text())
            out[int(rec["index"])] = rec
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable progress record %s", p)
    return out


def _resumable(entry: Path, key: dict[str, Any]) -> bool:
    try:
        partial = json.loads((entry / PARTIAL).read_text())
        feats = np.load(entry / "features.npy", mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return False
    want = json.loads(json.dumps(key, default=str))
    shape, dtype = feature_shape(key)
    return partial == want and feats.shape == shape and feats.dtype == dtype


def prepare(entry: Path, *, key: dict[str, Any]) -> dict[int, str]:
    """Make `entry` ready to receive rows; returns the shards already done (verified): index ->
    the hash of its rows.

    `key` holds n, dim, shard_size and the fingerprint (and for the token cache the
    `features` and `tokens` blocks): a partial entry is resumed only if its key is identical,
    else it is wiped and preallocated afresh.
    """
    from probe.core.io import fsync_dir, write_json_atomic

    if _resumable(entry, key) and not (entry / "meta.json").exists():
        return _verified_done(entry, key)
    if entry.exists():
        shutil.rmtree(entry)
    feats = entry / "features.npy"
    try:
        (entry / PROGRESS).mkdir(parents=True)
        shape, dtype = feature_shape(key)
        mm = open_memmap(feats, mode="w+", dtype=dtype, shape=shape)
        del mm
        with open(feats, "rb+") as fh:
            size = os.fstat(fh.fileno()).st_size
            os.posix_fallocate(fh.fileno(), 0, size)  # ENOSPC now, not a SIGBUS later
            os.fsync(fh.fileno())
    except OSError as err:
        shutil.rmtree(entry, ignore_errors=True)
        raise disk_error(err, feats) from err
    write_json_atomic(entry / PARTIAL, key)
    fsync_dir(entry)
    return {}


def _verified_done(entry: Path, key: dict[str, Any]) -> dict[int, str]:
    feats = entry / "features.npy"
    offset, ranges = data_offset(feats), shard_ranges(key["n"], key["shard_size"])
    layout = feature_shape(key)
    dim, dtype = row_values(layout), layout[1]
    done = {}
    for i, rec in progress_records(entry).items():
        if i >= len(ranges) or [rec.get("start"), rec.get("stop")] != list(ranges[i]):
            continue
        if hash_rows(feats, *ranges[i], dim=dim, offset=offset, dtype=dtype) == rec.get(HASH):
            done[i] = rec[HASH]
        else:
            log.warning("%s: shard %d (rows %d-%d) does not match its record: redoing", entry, i,
                        *ranges[i])  # fmt: skip
    log.info("%s: resuming, %d of %d shards already written", entry, len(done), len(ranges))
    return done


class ShardWriter:
    """Writes one rank's rows in place and records each finished shard with its hash.

    A shard's flush to disk and its record run on a background thread while the rows of the
    next shard are hashed and written (one flush in flight at a time, so at most two shards
    of rows are dirty in the page cache); `close` waits for the last one and raises any
    error it met. `hashes` (shard index -> hash) holds the shards flushed and recorded: the
    finishing rank gets it over the process group, the on-disk record is for a resume.
    """

    def __init__(self, entry: Path, *, dim: int, dtype: Any = np.float32) -> None:
        self.entry = entry
        self.path = entry / "features.npy"
        self.dim = dim  # values a row (T x D for the token cache)
        self.dtype = np.dtype(dtype)
        self.offset = data_offset(self.path)
        self.fd = os.open(self.path, os.O_RDWR)
        self.hasher = hashlib.new(HASH)
        self.hashes: dict[int, str] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-flush")
        self._flush: Future | None = None

    def write(self, row: int, out: np.ndarray) -> None:
        arr = np.ascontiguousarray(out, dtype=self.dtype)
        self.hasher.update(arr)
        data = memoryview(arr).cast("B")
        pos = self.offset + row * self.dim * self.dtype.itemsize
        try:
            while len(data):
                written = os.pwrite(self.fd, data, pos)
                data, pos = data[written:], pos + written
        except OSError as err:
            raise disk_error(err, self.path) from err

    def end_shard(self, index: int, start: int, stop: int) -> None:
        """Rows on disk first, then the record: a record always means durable rows."""
        rec = {"index": index, "start": start, "stop": stop, HASH: self.hasher.hexdigest()}
        self.hasher = hashlib.new(HASH)
        self._wait()
        self._flush = self._pool.submit(self._record, rec)

    def _record(self, rec: dict[str, Any]) -> None:
        from probe.core.io import write_json_atomic

        try:
            os.fdatasync(self.fd)
        except OSError as err:
            raise disk_error(err, self.path) from err
        write_json_atomic(self.entry / PROGRESS / f"{rec['index']:08d}.json", rec)
        self.hashes[rec["index"]] = rec[HASH]

    def _wait(self) -> None:
        flush, self._flush = self._flush, None
        if flush is not None:
            flush.result()  # a failed flush raises here

    def close(self) -> None:
        try:
            self._wait()
        finally:
            self._pool.shutdown()
            os.close(self.fd)


def finalize(entry: Path, *, key: dict[str, Any], hashes: dict[int, str]) -> dict[str, Any]:
    """All shards written -> the checksum block for meta.json (hashes in shard order).

    `hashes` holds every shard's hash as its writer reported it (resumed shards: as verified
    when the plan was made); nothing is read back from `progress/`.
    """
    ranges = shard_ranges(key["n"], key["shard_size"])
    missing = [i for i in range(len(ranges)) if i not in hashes]
    if missing:
        raise ProbeError(
            f"{entry}: no writer reported shards {missing[:5]} ({len(missing)} of "
            f"{len(ranges)}); the entry is left unfinished: rerun the same command to extract "
            "them"
        )
    return {
        "algorithm": HASH,
        "shard_size": key["shard_size"],
        "shards": [hashes[i] for i in range(len(ranges))],
    }


def cleanup(entry: Path) -> None:
    """After meta.json: drop the resume state (harmless if a crash leaves it)."""
    shutil.rmtree(entry / PROGRESS, ignore_errors=True)
    (entry / PARTIAL).unlink(missing_ok=True)


def verify_features(path: Path, *, layout: Layout, checksum: dict[str, Any]) -> list[str]:
    """Re-hash every shard of a finished features.npy (about 1 GB/s) against meta.json."""
    start_t = time.perf_counter()
    offset = data_offset(path)
    n, dim, dtype = layout[0][0], row_values(layout), layout[1]
    expected = checksum.get("shards") or []
    ranges = shard_ranges(n, int(checksum.get("shard_size") or max(n, 1)))
    if checksum.get("algorithm") != HASH or len(expected) != len(ranges):
        return [f"meta.json's checksum block is malformed ({len(expected)} shard hashes)"]
    for i, (a, b) in enumerate(ranges):
        if hash_rows(path, a, b, dim=dim, offset=offset, dtype=dtype) != expected[i]:
            return [f"checksum mismatch in rows {a}-{b - 1} of {path.name} (shard {i})"]
    seconds = time.perf_counter() - start_t
    log.debug("verified %s: %.2f GB in %.2fs", path, n * dim * dtype.itemsize / 1e9, seconds)
    return []
