"""Several ranks on one extraction, as torchrun runs them: 2 real gloo ranks (tests/ranks.py).

Rank 0 finishes an entry from the shard hashes the ranks send it, not from a listing of
`progress/` (another node's records may be invisible to it on NFS); the dataset's
corrupt-image scan runs once, on rank 0, and the other ranks take its answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ranks import row_encoder, row_split, spawn

from probe.features.cache import CacheEntry
from probe.features.extract import extract_split

N, SHARD = 100, 10


def _extract(entry: Path, ctx=None) -> dict:
    return extract_split(encoder=row_encoder(), split=row_split(N),
                         entry=CacheEntry(entry, {"t": 1}), batch_size=4, num_workers=0,
                         desc="toy", shard_size=SHARD, ctx=ctx)  # fmt: skip


def _rank_with_hidden_records(rank: int, entry: str) -> None:
    """Rank 1 records its shards where rank 0 never looks (as if NFS hid them)."""
    from probe.features import distributed, shards

    if rank == 1:
        shards.PROGRESS = "progress-on-another-node"
    ctx, _ = distributed.setup("cpu", timeout_s=120)
    try:
        _extract(Path(entry), ctx)
    finally:
        distributed.teardown(ctx)


def test_rank_zero_finishes_without_seeing_the_other_ranks_records(tmp_path: Path) -> None:
    single = _extract(tmp_path / "single")
    entry = tmp_path / "two"
    spawn(_rank_with_hidden_records, 2, str(entry))
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["checksum"] == single["checksum"] and len(meta["checksum"]["shards"]) == N // SHARD
    assert (entry / "features.npy").read_bytes() == (
        tmp_path / "single" / "features.npy"
    ).read_bytes()
    assert CacheEntry(entry, {"t": 1}).problems(n=N) == []
    hidden = sorted(p.name for p in (entry / "progress-on-another-node").glob("*.json"))
    assert hidden == [f"{i:08d}.json" for i in range(1, N // SHARD, 2)]  # rank 1's: odd shards
    feats, labels = CacheEntry(entry, {"t": 1}).load()
    assert np.array_equal(feats[:, 0], np.arange(N)) and np.array_equal(labels, np.arange(N) % 7)
