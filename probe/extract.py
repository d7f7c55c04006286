"""Batched feature extraction of one source split into a cache entry.

Decoding and preprocessing run in DataLoader workers; rows are written straight into a
memory-mapped `features.npy` so host memory stays flat however large the split is.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
import torch
from numpy.lib.format import open_memmap
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from probe.cache import CacheEntry, fsync_dir
from probe.datasets.base import Split
from probe.encoders.base import Encoder
from probe.errors import ProbeError

log = logging.getLogger(__name__)


class _Samples(Dataset):
    """A Split viewed as a torch Dataset of (transformed sample, label)."""

    def __init__(self, split: Split, transform: Any) -> None:
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.split.load(self.split.items[i])), int(self.split.labels[i])


def resolve_num_workers(num_workers: Any, n_items: int) -> int:
    """`auto`: the CPUs this job was given (SLURM's count, else the process affinity)."""
    if num_workers != "auto":
        n = int(num_workers)
        if n < 0:
            raise ProbeError(f"num_workers={n} must be >= 0 or 'auto'")
        return n
    if n_items < 4096:  # tiny splits: worker start-up costs more than it saves
        return 0
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    n = int(cpus) if cpus else len(os.sched_getaffinity(0))
    return max(0, min(n - 1, 32))


def extract_split(
    *,
    encoder: Encoder,
    split: Split,
    entry: CacheEntry,
    batch_size: int,
    num_workers: Any,
    desc: str,
) -> dict[str, Any]:
    """Fill `entry` with the features of `split`; returns the meta it wrote."""
    if batch_size <= 0:
        raise ProbeError(f"batch_size={batch_size} must be a positive integer")
    entry.reset()
    n = len(split)
    workers = resolve_num_workers(num_workers, n)
    loader = DataLoader(
        _Samples(split, encoder.transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=str(encoder.device).startswith("cuda"),
        persistent_workers=False,
    )
    feats = None
    start = time.perf_counter()
    row = 0
    with tqdm(total=n, desc=desc, unit="img", dynamic_ncols=True, mininterval=1.0) as bar:
        for images, _labels in loader:
            out = encoder.embed(images).cpu().numpy()
            if feats is None:
                feats = open_memmap(
                    entry.path / "features.npy",
                    mode="w+",
                    dtype=np.float32,
                    shape=(n, out.shape[1]),
                )
            _check_finite(out, row=row, desc=desc)
            feats[row : row + len(out)] = out
            row += len(out)
            bar.update(len(out))
    if feats is None:
        raise ProbeError(f"{desc}: the split is empty; check the dataset directory")
    feats.flush()
    del feats
    np.save(entry.path / "labels.npy", split.labels)
    for name in ("features.npy", "labels.npy"):
        with open(entry.path / name, "rb+") as fh:
            os.fsync(fh.fileno())
    fsync_dir(entry.path)
    seconds = time.perf_counter() - start
    dim = int(np.load(entry.path / "features.npy", mmap_mode="r").shape[1])
    meta = {
        "n": n,
        "dim": dim,
        "dtype": "float32",
        "content_hash": split.content_hash(),
        "seconds": round(seconds, 3),
        "images_per_second": round(n / max(seconds, 1e-9), 1),
    }
    entry.finish(meta)
    log.info("%s: %d x %d features in %.1fs (%s)", desc, n, dim, seconds, entry.path)
    return meta


def _check_finite(out: np.ndarray, *, row: int, desc: str) -> None:
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        first = row + int(np.flatnonzero(bad)[0])
        raise ProbeError(
            f"{desc}: the encoder produced NaN or infinite features (first bad row {first}); "
            "try encoder.dtype=float32"
        )
