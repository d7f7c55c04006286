"""`dataset.skip_corrupt=true`: find the images that do not decode, drop them, record them.

The scan decodes every image once, in a thread pool (PIL releases the GIL while decoding). It
runs when the dataset is built, because a split's rows decide the cache's row count and
content hash before any feature is extracted. Its outcome is remembered per split in a small
JSON file keyed by the split's ids, labels and each file's size and modification time, so a
rerun (e.g. `stage=probe` on a CPU node) does not decode everything again; touching any
file rescans. The memo lives in `$PROBE_SCAN_CACHE` if set, else under the run's cache
(`{cache_dir}/.scans`; a dataset built outside a run: `$XDG_CACHE_HOME/probe/scans`).

Under torchrun the scan runs once: rank 0 builds the dataset inside `recorded()`, which
collects each split's outcome, and the other ranks build theirs inside `answered(outcomes)`,
which answers a split with the same sample ids and labels without decoding or stat-ing
anything (`probe.features.stage.build_dataset`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.datasets.base import Split
from probe.datasets.common import ImageFiles

log = logging.getLogger(__name__)


# content hash of a split (ids and labels, before any drop) -> indices of its unreadable items:
# filled inside `recorded()`, read inside `answered()`; empty otherwise
_SHARED: dict[str, list[int]] = {}
_MODE: list[str] = []
_MEMO_ROOT: list[Path] = []  # the running run's memo folder (`memo_under`)


@contextmanager
def recorded() -> Iterator[dict[str, list[int]]]:
    """The outcome of every split scanned (or remembered) inside the block, to share."""
    _SHARED.clear()
    _MODE.append("record")
    try:
        yield _SHARED
    finally:
        _MODE.pop()


@contextmanager
def answered(outcomes: dict[str, list[int]]) -> Iterator[None]:
    """Inside the block, a split whose ids and labels another process scanned is answered."""
    _SHARED.clear()
    _SHARED.update(outcomes)
    _MODE.append("answer")
    try:
        yield
    finally:
        _MODE.pop()
        _SHARED.clear()


@contextmanager
def memo_under(cache_dir: str | Path) -> Iterator[None]:
    """Inside the block (a run's dataset build) the memo lives in `{cache_dir}/.scans`: a
    run writes only under the folders it was given (hidden: no encoder folder is so named)."""
    _MEMO_ROOT.append(Path(cache_dir).expanduser() / ".scans")
    try:
        yield
    finally:
        _MEMO_ROOT.pop()


def memo_dir() -> Path:
    """`$PROBE_SCAN_CACHE` (the user's choice), else the run's `{cache_dir}/.scans`, else (a
    dataset built outside a run) `$XDG_CACHE_HOME/probe/scans`."""
    if os.environ.get("PROBE_SCAN_CACHE"):
        return Path(os.environ["PROBE_SCAN_CACHE"]).expanduser()
    if _MEMO_ROOT:
        return _MEMO_ROOT[-1]
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "probe" / "scans"


def scan_key(split: Split) -> str:
    """Changes when the samples, their labels or any image file (size, mtime) change."""
    h = hashlib.sha256(split.content_hash().encode())
    load = split.load
    if isinstance(load, ImageFiles):
        for rel in split.items:
            try:
                st = os.stat(os.path.join(load.root, rel))
                h.update(f"{st.st_size}:{st.st_mtime_ns};".encode())
            except OSError:
                h.update(b"missing;")
    else:  # in-memory arrays or a hub copy: its own content fingerprint where it has one
        h.update(type(load).__qualname__.encode())
        h.update(str(getattr(getattr(load, "ds", None), "_fingerprint", "")).encode())
    return h.hexdigest()


def _is_bad(load: Callable[[Any], Any], item: Any) -> bool:
    try:
        load(item)
    except Exception:  # noqa: BLE001 - our ProbeError or any decode failure: corrupt
        return True
    return False


def find_corrupt(split: Split, *, desc: str, workers: int | None = None) -> list[int]:
    """Indices of the items that fail to load (full decode), checked in a thread pool."""
    from tqdm.auto import tqdm

    workers = workers or min(32, len(os.sched_getaffinity(0)) * 2)
    log.info("%s: decoding all %d images to find unreadable ones (dataset.skip_corrupt)", desc,
             len(split))  # fmt: skip
    with ThreadPoolExecutor(max_workers=workers) as pool:
        flags = list(
            tqdm(
                pool.map(lambda it: _is_bad(split.load, it), split.items, chunksize=64),
                total=len(split),
                desc=f"checking {desc}",
                unit="img",
                mininterval=1.0,
            )
        )
    return [i for i, bad in enumerate(flags) if bad]


def remembered_corrupt(split: Split, *, desc: str) -> list[int]:
    """`find_corrupt`, answered from the memo when nothing changed since the last scan."""
    from probe.core.io import write_json_atomic

    path = memo_dir() / f"{scan_key(split)}.json"
    bad = _memo(path, len(split))
    if bad is not None:
        return bad
    bad = find_corrupt(split, desc=desc)
    try:
        write_json_atomic(path, {"split": desc, "n": len(split), "bad": bad})
    except ProbeError as err:  # an unwritable memo only costs a rescan next time
        log.warning("could not remember the scan of %s: %s", desc, err)
    return bad


def _memo(path: Path, n: int) -> list[int] | None:
    """The remembered outcome, or None (scan again) when there is none or it is not one this
    split can have: `bad` must be distinct row indices in 0..n-1 and `n` the split's size
    (an index out of range would drop rows of another split, or fail on lookup)."""
    try:
        memo = json.loads(path.read_text())
        bad = memo["bad"]
        n_memo = memo.get("n", n)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    ints = isinstance(bad, list) and all(type(i) is int for i in bad)
    if n_memo != n or not ints or len(set(bad)) != len(bad) or not all(0 <= i < n for i in bad):
        log.warning("%s does not fit this split (%d images): scanning again", path, n)
        return None
    return sorted(bad)


def drop(split: Split, bad: Sequence[int]) -> Split:
    keep = np.setdiff1d(np.arange(len(split)), np.asarray(bad, dtype=np.int64))
    ids = split.ids if split.ids is not None else [str(i) for i in range(len(split))]
    return Split(
        items=[split.items[i] for i in keep],
        labels=split.labels[keep],
        load=split.load,
        ids=[ids[i] for i in keep],
    )


def _outcome(split: Split, *, desc: str) -> list[int]:
    """The split's unreadable items: shared by another rank, remembered, or scanned now."""
    mode = _MODE[-1] if _MODE else None
    if mode == "answer" and split.content_hash() in _SHARED:
        return _SHARED[split.content_hash()]
    bad = remembered_corrupt(split, desc=desc)
    if mode == "record":
        _SHARED[split.content_hash()] = bad
    return bad


def skip_corrupt_images(splits: dict[str, Split], *, name: str) -> dict[str, Any]:
    """Drop unreadable images from every split, in place; returns the record of what went."""
    record: dict[str, Any] = {"count": 0, "ids": {}}
    for split_name, split in list(splits.items()):
        bad = _outcome(split, desc=f"{name}/{split_name}")
        if bad:
            ids = split.ids or [str(i) for i in range(len(split))]
            record["ids"][split_name] = [ids[i] for i in bad]
            record["count"] += len(bad)
            splits[split_name] = drop(split, bad)
            log.warning("%s/%s: skipping %d unreadable images", name, split_name, len(bad))
    return record
