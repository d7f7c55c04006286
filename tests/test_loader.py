"""Where extraction's rows come from: decoded samples under a byte budget, or array blocks.

The budget test counts, across the DataLoader's worker processes, the samples produced and
the samples the (slow) encoder has consumed: what is in between is what the loader buffers.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import get_worker_info

from probe.core.errors import ProbeError
from probe.datasets.base import Split
from probe.datasets.npz import build as build_npz
from probe.encoders.base import Encoder
from probe.encoders.precomputed import build as build_precomputed
from probe.features import loader
from probe.features.cache import CacheEntry
from probe.features.extract import extract_split

SAMPLE = 16384  # float32 values per sample: 64 KiB


class CountedLoad:
    """Sample i, counted in a shared counter when a worker process loads it."""

    def __init__(self, produced) -> None:
        self.produced = produced

    def __call__(self, i: int) -> int:
        if get_worker_info() is not None:
            with self.produced.get_lock():
                self.produced.value += 1
        return i


def _wide(i: int) -> torch.Tensor:
    return torch.full((SAMPLE,), float(i))


class SlowConsumer:
    """The encoder's forward: notes how far the workers are ahead, then takes its time."""

    def __init__(self, produced) -> None:
        self.produced, self.consumed, self.ahead = produced, 0, []

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.consumed += len(batch)
        time.sleep(0.03)
        self.ahead.append(self.produced.value - self.consumed)
        return batch[:, :2]


def _budgeted_run(tmp_path: Path, *, budget_mb: float, workers: int) -> tuple[list[int], dict]:
    produced = mp.get_context("fork").Value("i", 0)
    split = Split(items=list(range(240)), labels=np.zeros(240), load=CountedLoad(produced))
    consumer = SlowConsumer(produced)
    meta = extract_split(encoder=Encoder(transform=_wide, forward=consumer), split=split,
                         entry=CacheEntry(tmp_path / f"e{budget_mb}", {}), batch_size=4,
                         num_workers=workers, desc="slow", shard_size=240,
                         prefetch_mb=budget_mb)  # fmt: skip
    return consumer.ahead, meta


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_many_workers_and_a_slow_consumer_stay_within_the_budget(tmp_path: Path) -> None:
    batch_bytes = 4 * SAMPLE * 4  # 256 KiB
    ahead, meta = _budgeted_run(tmp_path, budget_mb=1, workers=8)  # 4 batches fit
    assert meta["n"] == 240
    peak = max(ahead) * SAMPLE * 4
    assert peak <= 1 << 20, f"{max(ahead)} samples ({peak >> 10} KiB) buffered past 1 MiB"
    assert max(ahead) >= 8, "the workers never ran ahead: the test measures nothing"
    # torch's own bound, as the loader relies on it: 8 workers x 4 batches ahead is 8 MiB
    plan = loader.prefetch_plan(workers=8, batch_bytes=batch_bytes, budget_mb=1, desc="t")
    assert (plan.workers, plan.depth, plan.bound) == (4, 1, 1 << 20)
    old = loader.Prefetch(workers=8, depth=4, batch_bytes=batch_bytes)
    produced = mp.get_context("fork").Value("i", 0)
    split = Split(items=list(range(240)), labels=np.zeros(240), load=CountedLoad(produced))
    batches = loader.batch_ranges([0], n=240, shard_size=240, batch_size=4)
    consumed, most = 0, 0
    for images, _ in loader.sample_loader(split, _wide, batches, prefetch=old, pin=False):
        consumed += len(images)
        time.sleep(0.03)
        most = max(most, produced.value - consumed)
    print(
        f"buffered at most: {max(ahead) * SAMPLE * 4 >> 10} KiB within a 1 MiB budget; "
        f"{most * SAMPLE * 4 >> 10} KiB with 8 workers x 4 batches ahead"
    )
    assert most * SAMPLE * 4 > 1 << 20, "8 workers x 4 batches ahead should exceed 1 MiB"
    assert most * SAMPLE * 4 <= old.bound


def test_prefetch_plan_cuts_workers_then_depth() -> None:
    mb = 1 << 20
    assert loader.prefetch_plan(workers=32, batch_bytes=347 * mb, budget_mb=2048, desc="t") == (
        loader.Prefetch(workers=5, depth=1, batch_bytes=347 * mb)
    )  # the case: 256 images at 336 px; 5 x 347 MB fit 2 GB, 32 x 4 did not
    small = loader.prefetch_plan(workers=4, batch_bytes=mb, budget_mb=2048, desc="t")
    assert (small.workers, small.depth) == (4, loader.MAX_DEPTH)
    huge = loader.prefetch_plan(workers=8, batch_bytes=4096 * mb, budget_mb=2048, desc="t")
    assert (huge.workers, huge.depth) == (1, 1)
    assert loader.prefetch_plan(workers=0, batch_bytes=mb, budget_mb=1, desc="t").bound == 0


def test_prefetch_budget_default_and_bad_values() -> None:
    from conftest import compose_cfg

    from probe.features.stage import extract_options

    assert extract_options(compose_cfg([]))["prefetch_mb"] == loader.DEFAULT_PREFETCH_MB == 2048
    for bad in ("0", "-5", "lots"):
        with pytest.raises(ProbeError, match=f"extract.prefetch_mb=.?{bad}"):
            extract_options(compose_cfg([f"extract.prefetch_mb={bad}"]))


def _npz(path: Path, dtype, n: int = 700) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.normal(size=(n, 5)).astype(dtype), y_train=np.arange(n) % 4,
             x_test=rng.normal(size=(50, 5)).astype(dtype), y_test=np.arange(50) % 4)  # fmt: skip
    return path


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_block_copy_equals_the_row_by_row_copy(tmp_path: Path, dtype) -> None:
    """The same bytes and checksums as the per-row DataLoader path, in a few block reads."""
    split = build_npz(path=str(_npz(tmp_path / "f.npz", dtype))).splits["train"]
    enc = build_precomputed()
    kw = {"batch_size": 64, "num_workers": 0, "desc": "npz", "shard_size": 128}
    block = extract_split(encoder=enc, split=split, entry=CacheEntry(tmp_path / "b", {}), **kw)
    rows = dataclasses.replace(enc, block=None)  # no block form: the DataLoader path
    per_row = extract_split(encoder=rows, split=split, entry=CacheEntry(tmp_path / "r", {}), **kw)
    assert block["checksum"] == per_row["checksum"] and len(block["checksum"]["shards"]) == 6
    assert (tmp_path / "b" / "features.npy").read_bytes() == (
        tmp_path / "r" / "features.npy"
    ).read_bytes()


class FailOnce:
    """`Split.block` that fails the first time it is asked for rows past `row`."""

    def __init__(self, block, row: int) -> None:
        self.block, self.row, self.failed = block, row, False

    def __call__(self, a: int, b: int) -> np.ndarray:
        if b > self.row and not self.failed:
            self.failed = True
            raise OSError("read error")
        return self.block(a, b)


def test_block_copy_resumes_from_its_recorded_shards(tmp_path: Path, caplog) -> None:
    split = build_npz(path=str(_npz(tmp_path / "f.npz", np.float64))).splits["train"]
    kw = {"encoder": build_precomputed(), "batch_size": 64, "num_workers": 0, "desc": "npz",
          "shard_size": 128}  # fmt: skip
    whole = extract_split(split=split, entry=CacheEntry(tmp_path / "w", {}), **kw)
    flaky = dataclasses.replace(split, block=FailOnce(split.block, row=400))
    entry = CacheEntry(tmp_path / "e", {})
    with pytest.raises(OSError, match="read error"):
        extract_split(split=flaky, entry=entry, **kw)
    assert not entry.meta_path.exists() and len(list((entry.path / "progress").iterdir())) == 3
    caplog.set_level("INFO")
    again = extract_split(split=flaky, entry=entry, **kw)
    assert "resuming, 3 of 6 shards already written" in caplog.text
    assert again["checksum"] == whole["checksum"]
    assert json.loads(entry.meta_path.read_text())["n"] == 700
