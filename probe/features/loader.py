"""Where one rank's rows come from during extraction: loaded samples under a byte budget, or
array blocks.

Images are decoded and transformed in DataLoader workers. torch keeps at most
`prefetch_factor * num_workers` batches dispatched and not yet handed to the loop
(`_MultiProcessingDataLoaderIter`: the loop primes that many indices and dispatches one more
each time it returns a batch), and each of those batches sits in shared memory, then in
pinned memory on CUDA. So the buffered bytes are that count times one batch's bytes, and we
choose both numbers from `extract.prefetch_mb`: workers and image size cannot multiply past
it (`/dev/shm` limits and the job's memory cgroup count those bytes).

Samples that already are feature vectors (`encoder=precomputed` on `dataset=npz`) need no
workers: when the split can hand out rows in blocks (`Split.block`) and the encoder can turn
a block into features (`Encoder.block`), rows are copied in blocks of at most `BLOCK_BYTES`,
at the speed of the disk, into the same shards, checksums and meta.json.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from probe.datasets.base import Split
from probe.encoders.base import Encoder
from probe.features import shards
from probe.features.batching import Samples, to_host

log = logging.getLogger(__name__)
DEFAULT_PREFETCH_MB = 2048
MAX_DEPTH = 4  # batches ahead per worker, at most (enough to hide a slow decode)
BLOCK_BYTES = 64 << 20  # rows per block copy: a bounded buffer, large enough to stream


def batch_ranges(todo: list[int], *, n: int, shard_size: int, batch_size: int) -> list[tuple]:
    """(shard, first row, stop row, shard rows) per batch; batches never cross a shard edge."""
    ranges = shards.shard_ranges(n, shard_size)
    out = []
    for i in todo:
        a, b = ranges[i]
        out += [(i, s, min(s + batch_size, b), (a, b)) for s in range(a, b, batch_size)]
    return out


@dataclass(frozen=True)
class Prefetch:
    """Workers and batches ahead per worker; `bound` is the most bytes they can buffer."""

    workers: int
    depth: int | None  # torch's prefetch_factor (None without workers)
    batch_bytes: int

    @property
    def bound(self) -> int:
        return self.workers * (self.depth or 0) * self.batch_bytes


def prefetch_plan(*, workers: int, batch_bytes: int, budget_mb: float, desc: str) -> Prefetch:
    """The most workers (up to `workers`) and depth whose buffered batches fit the budget.

    A budget below one batch still runs, one worker one batch ahead, with a warning.
    """
    if workers <= 0:
        return Prefetch(0, None, batch_bytes)
    batches = int(float(budget_mb) * 2**20) // max(batch_bytes, 1)
    if batches < 1:
        log.warning(
            "%s: one batch is %.0f MB, more than extract.prefetch_mb=%s: loading one batch "
            "ahead with one worker (lower batch_size or raise extract.prefetch_mb)",
            desc, batch_bytes / 2**20, budget_mb,
        )  # fmt: skip
        return Prefetch(1, 1, batch_bytes)
    if batches < workers:
        log.info("%s: %d workers instead of %d: extract.prefetch_mb=%s holds %d batches of "
                 "%.0f MB", desc, batches, workers, budget_mb, batches,
                 batch_bytes / 2**20)  # fmt: skip
    used = min(workers, batches)
    return Prefetch(used, min(MAX_DEPTH, batches // used), batch_bytes)


def sample_loader(
    split: Split,
    transform: Any,
    batches: list[tuple],
    *,
    prefetch: Prefetch,
    pin: bool,
    shape: tuple | None = None,
    desc: str = "",
) -> DataLoader:
    """The DataLoader of `batches` (from `batch_ranges`) under a `prefetch_plan`; `shape`:
    the one every sample must have (`Samples`)."""
    return DataLoader(
        Samples(split, transform, shape=shape, desc=desc),
        batch_sampler=[list(range(a, b)) for _, a, b, _ in batches],
        num_workers=prefetch.workers,
        pin_memory=pin,
        prefetch_factor=prefetch.depth,
    )


def embedded(loader: DataLoader, batches: list[tuple], embed: Callable) -> Iterator[tuple]:
    """(host features, where) per batch; the copy to the host is queued, not awaited, so the
    device computes batch i+1 while the caller writes batch i."""
    for (images, _labels), where in zip(loader, batches, strict=True):
        yield to_host(embed(images)), where


def block_reader(split: Split, encoder: Encoder) -> Callable[[int, int], np.ndarray] | None:
    """Rows [a, b) as float32 features straight from the split's arrays, or None when the
    split or the encoder has no block form (then samples go through the DataLoader)."""
    if split.block is None or encoder.block is None:
        return None
    return lambda a, b: encoder.block(split.block(a, b))


def block_rows(width: int, budget_mb: float) -> int:
    """Rows per block copy: `BLOCK_BYTES` (or the prefetch budget, if smaller) of features."""
    limit = min(BLOCK_BYTES, int(float(budget_mb) * 2**20))
    return max(1, limit // max(4 * width, 1))


def blocks(read: Callable[[int, int], np.ndarray], batches: list[tuple]) -> Iterator[tuple]:
    """(features, where) per block, in the shape `embedded` yields; the next block is read
    on a thread (a copy out of the memory map: the disk reads happen there) while the caller
    hashes and writes this one, so reading, hashing and flushing overlap."""

    def fetch(where: tuple) -> np.ndarray:
        return np.array(read(where[1], where[2]), dtype=np.float32, copy=True)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="block-read") as pool:
        ahead = pool.submit(fetch, batches[0]) if batches else None
        for i, where in enumerate(batches):
            rows = ahead.result()
            ahead = pool.submit(fetch, batches[i + 1]) if i + 1 < len(batches) else None
            yield (rows, None), where
