"""The feature cache: one directory per (encoder config, dataset config, source split).

The directory name carries a fingerprint of everything that changes the features, so a change
to any of it lands in a new directory and a stale entry can never be read for new settings.
`meta.json` is written last, after the arrays are flushed: a directory without it is an
unfinished extraction and is never used (see `probe/shards.py` for how one is resumed). An
entry with meta.json is verified before each use: shapes, dtypes and sizes against meta.json,
row count and sample ids against the dataset, and the SHA-256 recorded while writing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probe.errors import ProbeError

log = logging.getLogger(__name__)
HOST = socket.gethostname().replace(".", "_")

# Bump when a change to the extraction code changes the features it writes.
FEATURE_VERSION = 1
# Config keys that never change a feature value: names, locations, carving, metrics.
ENCODER_IGNORED = frozenset({"name", "batch_size", "compile"})
DATASET_IGNORED = frozenset(
    {"name", "root", "download", "metric", "val", "num_classes", "expected_sizes", "hint"}
)


def fingerprint(*, encoder: dict, dataset: dict, split: str, dtype: str) -> dict[str, Any]:
    """The settings that determine a cached split's features, as a JSON-able dict."""
    return {
        "feature_version": FEATURE_VERSION,
        "encoder": {k: v for k, v in sorted(encoder.items()) if k not in ENCODER_IGNORED},
        "dtype": dtype,
        "dataset": {k: v for k, v in sorted(dataset.items()) if k not in DATASET_IGNORED},
        "split": split,
    }


def digest(fp: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class CacheEntry:
    """One cached split. `path` exists fully only once `meta.json` is there."""

    path: Path
    fingerprint: dict[str, Any]

    @property
    def meta_path(self) -> Path:
        return self.path / "meta.json"

    def meta(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.meta_path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, OSError) as err:
            log.warning("unreadable %s (%s): the entry will be rebuilt", self.meta_path, err)
            return None

    def problems(
        self, *, n: int | None = None, content_hash: str | None = None, checksum: bool = True
    ) -> list[str]:
        """Why this entry must not be used (empty: finished and intact).

        Checks meta.json against the fingerprint and the dataset (row count, sample ids and
        labels), the arrays' shapes, dtypes and sizes against meta.json, and with `checksum`
        the SHA-256 of every shard of rows recorded at write time (about 1 s per GB).
        """
        meta = self.meta()
        if meta is None:
            return ["no meta.json (unfinished or never extracted)"]
        problems = []
        if meta.get("fingerprint") != json.loads(json.dumps(self.fingerprint, default=str)):
            problems.append("fingerprint differs")
        if n is not None and meta.get("n") != n:
            problems.append(f"{meta.get('n')} rows cached, dataset has {n}")
        if content_hash is not None and meta.get("content_hash") != content_hash:
            problems.append("dataset samples or labels changed")
        return problems or self._array_problems(meta, checksum=checksum)

    def _array_problems(self, meta: dict[str, Any], *, checksum: bool) -> list[str]:
        from probe.shards import verify_features

        try:
            feats = np.load(self.path / "features.npy", mmap_mode="r", allow_pickle=False)
            labels = np.load(self.path / "labels.npy", mmap_mode="r", allow_pickle=False)
            n, dim = int(meta["n"]), int(meta["dim"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            return [f"arrays unreadable or truncated ({err})"]
        if feats.shape != (n, dim) or feats.dtype != np.float32:
            return [f"features.npy is {feats.dtype} {feats.shape}, meta.json says float32 "
                    f"({n}, {dim})"]  # fmt: skip
        if labels.shape != (n,) or labels.dtype != np.int64:
            return [f"labels.npy is {labels.dtype} {labels.shape}, meta.json says int64 ({n},)"]
        if (self.path / "features.npy").stat().st_size != feats.offset + n * dim * 4:
            return ["features.npy has trailing bytes"]
        if not checksum:
            return []
        if "checksum" not in meta:
            return ["meta.json has no checksum (written by an older version)"]
        if file_sha256(self.path / "labels.npy") != meta["checksum"].get("labels"):
            return ["checksum mismatch in labels.npy"]
        return verify_features(self.path / "features.npy", n=n, dim=dim, checksum=meta["checksum"])

    def is_complete(
        self, *, n: int | None = None, content_hash: str | None = None, checksum: bool = True
    ) -> bool:
        """True if the entry is finished, intact and matches what the dataset should hold."""
        problems = self.problems(n=n, content_hash=content_hash, checksum=checksum)
        if problems and self.meta_path.exists():
            log.warning("cache entry %s is not usable (%s)", self.path, "; ".join(problems))
        return not problems

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """The arrays, memory-mapped; callers check `problems()` first (run.py does)."""
        meta = self.meta()
        if meta is None:
            raise ProbeError(f"no finished features at {self.path}")
        problems = self._array_problems(meta, checksum=False)
        if problems:
            raise ProbeError(
                f"cache entry {self.path} is damaged ({problems[0]}); delete it and rerun"
            )
        feats = np.load(self.path / "features.npy", mmap_mode="r", allow_pickle=False)
        labels = np.load(self.path / "labels.npy", allow_pickle=False)
        return feats, labels

    def reset(self) -> None:
        """Remove an unfinished or stale entry so it can be written afresh."""
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)

    def finish(self, meta: dict[str, Any]) -> None:
        meta = {**meta, "fingerprint": self.fingerprint}
        write_json_atomic(self.meta_path, meta)

    @property
    def lock_path(self) -> Path:
        """Beside the entry (not in it, so wiping the entry never drops a held lock); hidden, so
        a glob for `{split}-*` entries never picks it up."""
        return self.path.with_name(f".{self.path.name}.lock")


def entry_for(
    *, cache_dir: str | Path, encoder_name: str, dataset_name: str, split: str, fp: dict
) -> CacheEntry:
    root = Path(cache_dir).expanduser()
    return CacheEntry(root / encoder_name / dataset_name / f"{split}-{digest(fp)[:16]}", fp)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(path: Path) -> Path:
    """`.NAME.HOST.PID.tmp` beside `path`; leftovers of dead writers are swept on the next write."""
    for old in path.parent.glob(f".{path.name}.{HOST}.*.tmp"):
        pid = old.name.removesuffix(".tmp").rpartition(".")[2]
        if pid.isdigit() and not _alive(int(pid)):
            _unlink_quietly(old)
    return path.with_name(f".{path.name}.{HOST}.{os.getpid()}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write through a temp file in the same directory, fsync, rename: old or new, never half."""
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    write_text_atomic(path, text)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Any text file (JSON, tables, task lists) the same way: old or new, never half."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        _unlink_quietly(tmp)
        from probe.shards import disk_error

        raise disk_error(err, path) from err
    fsync_dir(path.parent)


def save_npy_atomic(path: str | Path, array: np.ndarray) -> None:
    """np.save through a temp file in the same directory, fsync, rename."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        _unlink_quietly(tmp)
        from probe.shards import disk_error

        raise disk_error(err, path) from err
    fsync_dir(path.parent)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
