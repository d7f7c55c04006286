"""Reading rows of cached features without making the whole memory map resident.

A cache entry is loaded as a read-only memory map. Touching its pages maps them into the
process, and the resident-set size (what cluster schedulers and OOM killers count) then
includes every page read, up to the whole file. Rows read with plain file reads land in a
fresh buffer instead: the page cache still serves them, but it is not charged to the
process and the kernel can drop it.
"""

from __future__ import annotations

import mmap

import numpy as np


def _top_level_map(arr: np.ndarray) -> bool:
    """A memory map as `np.load(mmap_mode=...)` returns it (not a view of one): its
    `offset` is then the file position of row 0."""
    return (
        isinstance(arr, np.memmap)
        and isinstance(arr.base, mmap.mmap)
        and arr.ndim >= 2
        and arr.flags.c_contiguous
    )


def read_rows(arr: np.ndarray, start: int, stop: int, *, dtype=np.float32) -> np.ndarray:
    """Rows [start, stop) of `arr` (N x D, or N x T x D for the token cache) as a new array
    of `dtype` (None: the array's own)."""
    stop = min(stop, len(arr))
    dtype = arr.dtype if dtype is None else dtype
    if not _top_level_map(arr):
        return np.array(arr[start:stop], dtype=dtype)
    out = np.empty((max(stop - start, 0), *arr.shape[1:]), dtype=arr.dtype)
    if out.size == 0:  # no rows, or rows of zero width: nothing to read (memoryview refuses)
        return out.astype(dtype)
    row_bytes = out.itemsize * int(np.prod(arr.shape[1:]))
    with open(arr.filename, "rb") as fh:
        fh.seek(int(arr.offset) + start * row_bytes)
        view = memoryview(out).cast("B")
        got = fh.readinto(view)
    if got != view.nbytes:
        raise OSError(f"{arr.filename}: short read ({got} of {view.nbytes} bytes)")
    return out if out.dtype == dtype else out.astype(dtype)
