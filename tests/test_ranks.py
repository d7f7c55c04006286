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


def _rank_builds(rank: int, overrides: list[str], out: str) -> None:
    """Build the run's dataset as every torchrun rank does; note each corrupt-image scan."""
    import os

    from conftest import compose_cfg

    from probe.datasets import corrupt
    from probe.features import distributed
    from probe.features.stage import build_dataset

    os.environ["PROBE_SCAN_CACHE"] = f"{out}/memo-rank{rank}"  # no memo shared through files
    scans, scan = [], corrupt.find_corrupt
    corrupt.find_corrupt = lambda split, **kw: scans.append(kw["desc"]) or scan(split, **kw)
    ctx, _ = distributed.setup("cpu", timeout_s=120)
    try:
        ds = build_dataset(compose_cfg(overrides), ctx)
    finally:
        distributed.teardown(ctx)
    sizes = {s: len(v) for s, v in ds.splits.items()}
    Path(out, f"rank{rank}.json").write_text(json.dumps(
        {"scans": scans, "sizes": sizes, "skipped": ds.info["skipped_corrupt"],
         "hashes": {s: v.content_hash() for s, v in ds.splits.items()}}))  # fmt: skip


def test_the_corrupt_image_scan_runs_on_rank_zero_only(tmp_path: Path) -> None:
    import fakes

    fake = fakes.make("imagefolder", tmp_path / "data")
    fakes.truncate(tmp_path / "data" / "folders" / "train" / "bee" / "9.png")
    overrides = ["dataset=imagefolder", *fake.overrides, "dataset.skip_corrupt=true"]
    spawn(_rank_builds, 2, overrides, str(tmp_path))
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["scans"] == ["imagefolder/train", "imagefolder/val", "imagefolder/test"]
    assert r1["scans"] == [], "rank 1 decoded the images again"
    assert r0["skipped"] == r1["skipped"] == {"count": 1, "ids": {"train": ["train/bee/9.png"]}}
    assert r0["sizes"] == r1["sizes"] == {"train": 11, "val": 6, "test": 6}
    assert r0["hashes"] == r1["hashes"]
