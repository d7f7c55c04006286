"""The feature cache: one directory per (encoder config, dataset config, source split).

The directory name carries a fingerprint of everything that changes the features, so a change
to any of it lands in a new directory and a stale entry can never be read for new settings.
`meta.json` is written last, after the arrays are flushed: a directory without it is an
unfinished extraction and is never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probe.errors import ProbeError

log = logging.getLogger(__name__)

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

    def is_complete(self, *, n: int | None = None, content_hash: str | None = None) -> bool:
        """True if the entry is finished and matches what the dataset says it should hold."""
        meta = self.meta()
        if meta is None:
            return False
        problems = []
        if meta.get("fingerprint") != json.loads(json.dumps(self.fingerprint, default=str)):
            problems.append("fingerprint differs")
        if n is not None and meta.get("n") != n:
            problems.append(f"{meta.get('n')} rows cached, dataset has {n}")
        if content_hash is not None and meta.get("content_hash") != content_hash:
            problems.append("dataset samples or labels changed")
        if problems:
            log.warning("cache entry %s is stale (%s): rebuilding", self.path, "; ".join(problems))
        return not problems

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        meta = self.meta()
        if meta is None:
            raise ProbeError(f"no finished features at {self.path}")
        feats = np.load(self.path / "features.npy", mmap_mode="r", allow_pickle=False)
        labels = np.load(self.path / "labels.npy", allow_pickle=False)
        if feats.shape != (meta["n"], meta["dim"]) or labels.shape != (meta["n"],):
            raise ProbeError(
                f"cache entry {self.path} holds arrays of shape {feats.shape} / {labels.shape}, "
                f"meta.json says ({meta['n']}, {meta['dim']}); delete the directory and rerun"
            )
        return feats, labels

    def reset(self) -> None:
        """Remove an unfinished or stale entry so it can be written afresh."""
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)

    def finish(self, meta: dict[str, Any]) -> None:
        meta = {**meta, "fingerprint": self.fingerprint}
        write_json_atomic(self.meta_path, meta)


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


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write through a temp file in the same directory, fsync, rename: old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ProbeError(f"could not write {path}: {err.strerror or err}") from err
    fsync_dir(path.parent)
