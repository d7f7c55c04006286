"""The feature cache: one directory per (encoder config, dataset config, source split).

The directory name carries a fingerprint of everything that changes the features, so a change
to any of it lands in a new directory and a stale entry can never be read for new settings.
`meta.json` is written last, after the arrays are flushed: a directory without it is an
unfinished extraction and is never used (see `probe/features/shards.py` for how one is resumed). An
entry with meta.json is verified before each use: shapes, dtypes and sizes against meta.json,
row count and sample ids against the dataset, and the SHA-256 recorded while writing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.core.io import write_json_atomic
from probe.core.walk import walk_files
from probe.encoders.kinds import definition
from probe.encoders.tokens import is_token_kind
from probe.features.meta import feature_shape
from probe.features.meta import problem as meta_problem

log = logging.getLogger(__name__)

# Bump when a change to the extraction code changes the features it writes.
FEATURE_VERSION = 1
# Config keys that never change a feature value: names, carving, metrics, the width check, the
# kinds extracted alongside (each kind's entry carries its own `feature`, see stage.py), and
# `encoder.dtype`, which is what was asked: the fingerprint counts the dtype the features are
# really computed in; `patch_size` and `prefix_tokens`, which (like `width`) describe the model
# for the size estimates and are checked against it. `token_pool` counts only in a token kind's
# entry, and only when set, so no other entry moved when the key was added.
ENCODER_IGNORED = frozenset({"name", "batch_size", "compile", "width", "features", "dtype",
                             "patch_size", "prefix_tokens"})  # fmt: skip
DATASET_IGNORED = frozenset(
    {"name", "download", "metric", "val", "num_classes", "expected_sizes", "hint"}
)


# The libraries whose versions can change a feature value without changing any setting:
# image decoding (Pillow), the resize (torchvision), the model code (transformers, torch).
LIBRARIES = ("pillow", "torch", "torchvision", "transformers")


def library_versions() -> dict[str, str | None]:
    """The installed versions of `LIBRARIES` (from package metadata: nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def library_drift(meta: dict[str, Any]) -> list[str]:
    """`name then -> now` for each library whose version differs from the entry's meta.json
    (an entry from before versions were recorded has nothing to compare)."""
    then = meta.get("libraries")
    if not isinstance(then, dict):
        return []
    now = library_versions()
    return [f"{k} {then.get(k)} -> {now[k]}" for k in LIBRARIES if then.get(k) != now[k]]


def fingerprint(
    *, encoder: dict, dataset: dict, split: str, dtype: str, data_root: str | None = None
) -> dict[str, Any]:
    """The settings that determine a cached split's features, as a JSON-able dict.

    A dataset `root` under `data_root` counts by its relative path, so moving the whole data
    root keeps the cache while two different folders (say two `imagefolder` runs) never share
    one; the root counts by its real path, so a link re-pointed to another folder is another
    entry. A local model directory counts with its files' sizes and modification times (and
    real paths, where reached through a link: `_files_stamp`), so a re-converted checkpoint
    at the same path, or a link re-pointed to another, is re-extracted; so does a local
    weights file (`checkpoint`, the timm family's). A feature kind whose definition changed
    since the cache began counts with its definition's number (`kinds.definition`: a layer kind
    such as `cls.l-2` its base's): an entry extracted under an older meaning of `cls` is never
    read as today's; `pooler_output` entries are unchanged.
    """
    ds = {k: v for k, v in sorted(dataset.items()) if k not in DATASET_IGNORED}
    if ds.get("root"):
        ds["root"] = _location(ds["root"], data_root)
    enc = {k: v for k, v in sorted(encoder.items()) if k not in ENCODER_IGNORED}
    if enc.get("token_pool") is None or not is_token_kind(enc.get("feature")):
        enc.pop("token_pool", None)
    number = definition(enc["feature"]) if isinstance(enc.get("feature"), str) else None
    if number is not None:
        enc["feature_definition"] = number
    if isinstance(enc.get("model"), str) and Path(enc["model"]).expanduser().is_dir():
        enc["model_files"] = _files_stamp(Path(enc["model"]).expanduser())
    if isinstance(enc.get("checkpoint"), str) and Path(enc["checkpoint"]).expanduser().is_file():
        path = Path(enc["checkpoint"]).expanduser()
        enc["checkpoint_file"] = _files_stamp(path.parent, only=path.name)
    return {"feature_version": FEATURE_VERSION, "encoder": enc, "dtype": dtype, "dataset": ds,
            "split": split}  # fmt: skip


def _location(root: str, data_root: str | None) -> str:
    path = Path(root).expanduser().resolve()
    if data_root:
        base = Path(data_root).expanduser().resolve()
        if path == base or base in path.parents:
            return str(path.relative_to(base))
    return str(path)


def _files_stamp(model_dir: Path, only: str | None = None) -> str:
    """Each file's name, size and modification time below `model_dir` (or of `only` in it).

    The walk follows links once (`probe.core.walk`: a loop ends, a file counts once). A file
    the name does not lead to directly (through a link, or a relative path, which depends on
    the working directory) also counts with its real path: a link re-pointed to another
    checkpoint of the same size and age is another stamp, so another cache entry.
    """
    h = hashlib.sha256()
    files = [model_dir / only] if only else map(Path, walk_files(model_dir).files)
    for f in sorted(files):
        try:
            st = f.stat()
        except OSError:  # a dangling link: not a file the model can read
            continue
        line = f"{f.relative_to(model_dir)}:{st.st_size}:{st.st_mtime_ns}"
        real = os.path.realpath(f)
        if real != os.path.normpath(f):
            line += f":{real}"
        h.update(f"{line}\n".encode())
    return h.hexdigest()


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
        """meta.json, or None if missing, unreadable or of the wrong shape (`meta.problem`)."""
        return self._read_meta()[0]

    def _read_meta(self) -> tuple[dict[str, Any] | None, str | None]:
        """(meta, None), (None, None) when there is none, or (None, why it is unusable)."""
        try:
            meta = json.loads(self.meta_path.read_text())
        except FileNotFoundError:
            return None, None
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
            why = f"is unreadable ({err})"
        else:
            why = meta_problem(meta)
            if why is None:
                return meta, None
            why = f"is malformed: it {why}"
        log.warning("%s %s: the entry will be rebuilt", self.meta_path, why)
        return None, why

    def problems(
        self, *, n: int | None = None, content_hash: str | None = None, checksum: bool = True
    ) -> list[str]:
        """Why this entry must not be used (empty: finished and intact).

        Checks meta.json against the fingerprint and the dataset (row count, sample ids and
        labels), the arrays' shapes, dtypes and sizes against meta.json, and with `checksum`
        the SHA-256 of every shard of rows recorded at write time (about 1 s per GB).
        """
        meta, why = self._read_meta()
        if meta is None:
            return [f"meta.json {why}" if why else "no meta.json (unfinished or never extracted)"]
        problems = []
        if meta.get("fingerprint") != json.loads(json.dumps(self.fingerprint, default=str)):
            problems.append("fingerprint differs")
        if n is not None and meta.get("n") != n:
            problems.append(f"{meta.get('n')} rows cached, dataset has {n}")
        if content_hash is not None and meta.get("content_hash") != content_hash:
            problems.append("dataset samples or labels changed")
        return problems or self._array_problems(meta, checksum=checksum)

    def _array_problems(self, meta: dict[str, Any], *, checksum: bool) -> list[str]:
        from probe.features.shards import verify_features

        try:
            feats = np.load(self.path / "features.npy", mmap_mode="r", allow_pickle=False)
            labels = np.load(self.path / "labels.npy", mmap_mode="r", allow_pickle=False)
            rows, kind = feature_shape(meta)
        except (OSError, ValueError, KeyError, TypeError) as err:
            return [f"arrays unreadable or truncated ({err})"]
        if feats.shape != rows or feats.dtype != kind:
            return [f"features.npy is {feats.dtype} {feats.shape}, meta.json says {kind} {rows}"]
        shape, dtype = label_shape(meta)
        if labels.shape != shape or labels.dtype != dtype:
            return [f"labels.npy is {labels.dtype} {labels.shape}, meta.json says {dtype} {shape}"]
        if (self.path / "features.npy").stat().st_size != feats.offset + feats.nbytes:
            return ["features.npy has trailing bytes"]
        if not checksum:
            return []
        if "checksum" not in meta:
            return ["meta.json has no checksum (written by an older version)"]
        if file_sha256(self.path / "labels.npy") != meta["checksum"].get("labels"):
            return ["checksum mismatch in labels.npy"]
        return verify_features(self.path / "features.npy", layout=(rows, kind),
                               checksum=meta["checksum"])  # fmt: skip

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

    def finish(self, meta: dict[str, Any]) -> None:
        meta = {**meta, "libraries": library_versions(), "fingerprint": self.fingerprint}
        write_json_atomic(self.meta_path, meta)

    def update_meta(self, fields: dict[str, Any]) -> None:
        """Add fields to a finished entry's meta.json (atomically; the rest is kept as is)."""
        meta = self.meta()
        if meta is not None:
            write_json_atomic(self.meta_path, {**meta, **fields})

    @property
    def lock_path(self) -> Path:
        """Beside the entry (not in it, so wiping the entry never drops a held lock); hidden, so
        a glob for `{split}-*` entries never picks it up."""
        return self.path.with_name(f".{self.path.name}.lock")


def label_layout(labels: np.ndarray) -> dict[str, Any]:
    """meta.json's `labels` block: the shape and dtype of labels.npy. Written only for labels
    that are not one int64 per row (multi-label rows, N x K), so a single-label entry's
    meta.json, and the cache it belongs to, are what they were before the block existed."""
    return {"shape": [int(d) for d in labels.shape], "dtype": str(labels.dtype)}


def label_shape(meta: dict[str, Any]) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype labels.npy must have: the `labels` block's, else (n,) int64."""
    block = meta.get("labels")
    if block is None:
        return (int(meta["n"]),), np.dtype(np.int64)
    return tuple(block["shape"]), np.dtype(block["dtype"])


def entry_for(
    *, cache_dir: str | Path, encoder_name: str, dataset_name: str, split: str, fp: dict
) -> CacheEntry:
    root = Path(cache_dir).expanduser()
    return CacheEntry(root / encoder_name / dataset_name / f"{split}-{digest(fp)[:16]}", fp)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()
