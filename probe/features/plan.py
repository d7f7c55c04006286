"""Rank 0's plan of one extraction: take the locks, reuse, resume or start each entry.

The plan is what every rank then follows (it is broadcast): per entry its key (what
`partial.json` must match to resume), the shards still to do and the hashes of those already
done (verified against their bytes), the columns of its kind in the encoder's one output (a
token kind's T x D values a row flattened, `probe/features/layout.py`), the bytes of one
transformed sample (the prefetch budget counts in them) and the union of shards the ranks share
round-robin.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from probe.core.errors import ProbeError
from probe.datasets.base import Split
from probe.encoders.base import Encoder
from probe.features import shards
from probe.features.cache import CacheEntry
from probe.features.layout import layouts
from probe.features.lock import EntryLock

log = logging.getLogger(__name__)


def make_plan(
    encoder: Encoder,
    split: Split,
    entries: dict[str, CacheEntry],
    *,
    shard_size: int,
    locks: list[EntryLock],
    desc: str,
) -> dict[str, Any]:
    """Rank 0: take the locks, then reuse finished entries, resume partial ones, start the rest.

    Returns per entry still to fill its key, the shards to do and the hashes of those already
    done, the columns of its kind in the encoder's output and the bytes of one sample, and
    the union of shards to run.
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
        keys, shard_todo, hashes = {}, {}, {}
        for kind, entry in todo.items():
            layout = columns["layouts"].pop(kind)
            key = {"n": len(split), "dim": layout.shape[-1],
                   "shard_size": shard_size, "content_hash": split.content_hash(),
                   "fingerprint": entry.fingerprint, **layout.key(len(split))}  # fmt: skip
            done = shards.prepare(entry.path, key=key)
            n_shards = len(shards.shard_ranges(key["n"], shard_size))
            keys[kind], hashes[kind] = json_safe(key), done
            shard_todo[kind] = [i for i in range(n_shards) if i not in done]
        union = sorted(set().union(*shard_todo.values()))
        return {"keys": keys, "todo": shard_todo, "done": hashes, "columns": columns,
                "shards": union}  # fmt: skip
    except ProbeError as err:
        return {"error": str(err)}


def json_safe(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _columns(encoder: Encoder, split: Split, kinds: list[str], desc: str) -> dict[str, Any]:
    """One sample through the encoder: each kind's [start, stop) columns in `embed`'s output
    and its row's layout (popped by `make_plan` into the key: the broadcast plan holds JSON).

    An encoder with one output fills any single entry (the unnamed kind ``""`` of pixels).
    """
    one = encoder.transform(split.load(split.items[0]))
    rows = layouts(encoder, one, desc=desc)
    spans, width = {}, 0
    for name, layout in rows.items():
        spans[name], width = [width, width + layout.values], width + layout.values
    only = [0, width] if len(spans) == 1 else None
    out, found = {}, {}
    for kind in kinds:
        out[kind] = spans.get(kind, only)
        found[kind] = rows.get(kind, next(iter(rows.values())) if only else None)
        if out[kind] is None:
            raise ProbeError(f"{desc}: the encoder gives {list(spans)}, not the kind {kind!r}")
    return {"spans": out, "width": width, "sample_bytes": one.numel() * one.element_size(),
            "sample_shape": list(one.shape), "layouts": found}  # fmt: skip
