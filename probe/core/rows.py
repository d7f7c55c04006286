"""Row selections of cached features that are read when used, never copied whole.

The protocol carves val out of train (`X[keep]`, `X[hold]`), refits on train + val, and may
L2-normalise every row. Done with numpy, each step copies the features (on ImageNet, 5.2 GB
a time). `Rows` is a selection instead: which rows of which arrays, in which order, with an
optional row normalisation, read chunk by chunk when a consumer needs them. Reads of a
memory-mapped cache entry go through `read_rows` (plain file reads), so the map's pages are
not charged to the process.

A solver that keeps its own copy of the features (the torch backend) builds it once from the
largest selection it will be asked to fit: `both = Rows.cat(train, val)` and
`both.head(len(train))` for the search tell it that the search's rows are the first rows of
the refit's, so one copy serves both (`origin`).

The token cache's N x T x D float16 arrays get the same face from `probe.core.token_rows`
(`TokenRows`, which keeps their shape and dtype): `Rows.of` and `Rows.cat` hand one out for an
array of more than two dimensions, so the protocol's splits work on either unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from probe.core.arrays import read_rows

BLOCK = 65536  # rows per read when a consumer asks for many at once
EPS = 1e-12  # torch.nn.functional.normalize's default (which `_unit_rows` does not clamp at)


@dataclass(frozen=True)
class _Part:
    array: np.ndarray  # the source (a memory map, or any 2-D array)
    index: np.ndarray | None  # rows of `array` in order (None: all of them)
    l2: bool = False  # divide each row by its Euclidean norm (computed in float64)

    def __len__(self) -> int:
        return len(self.array) if self.index is None else len(self.index)

    def read(self, start: int, stop: int, dtype=np.float32) -> np.ndarray:
        """Rows [start, stop) of this part, float32 (`dtype` None: the array's own)."""
        if self.index is None:
            out = read_rows(self.array, start, stop, dtype=dtype)
        else:
            out = _gather(self.array, self.index[start:stop], dtype=dtype)
        return _unit_rows(out) if self.l2 else out


def _gather(array: np.ndarray, index: np.ndarray, dtype=np.float32) -> np.ndarray:
    """array[index] as `dtype` (None: the array's own); from a memory map, by one file read
    per run of consecutive rows (fancy indexing of a map would make its pages resident)."""
    dtype = array.dtype if dtype is None else dtype
    if not isinstance(array, np.memmap) or len(index) == 0:
        return np.asarray(array[index], dtype=dtype)
    out = np.empty((len(index), *array.shape[1:]), dtype=dtype)
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(index)]])
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        first = int(index[a])
        out[a:b] = read_rows(array, first, first + (b - a), dtype=dtype)
    return out


def _unit_rows(block: np.ndarray) -> np.ndarray:
    """`x / ||x||` per row in float64, stored as float32 (`probe.normalize=l2`); a zero row
    stays zero. float64 holds the squares of every float32 (1e-90 to 1e77), so every
    non-zero row comes out unit length, where `max(||x||, EPS)` would leave rows with norms
    below EPS short of it (rows of magnitude 1e-13 would stay at 0.1)."""
    b64 = block.astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", b64, b64))[:, None]
    return (b64 / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class Rows:
    """An ordered selection of rows from one or more 2-D float arrays of the same width.

    Behaves like a read-only float32 array where the protocol needs it to: `len`, `shape`,
    `dtype`, slicing (`rows[a:b]` reads those rows), integer-array indexing (a new
    selection) and `np.asarray(rows)` (the whole selection, read in blocks).
    """

    def __init__(self, parts: Sequence[_Part], *, origin: tuple[Rows, int] | None = None):
        widths = {p.array.shape[1] for p in parts}
        if len(widths) > 1:
            raise ValueError(f"Rows: parts have different widths {sorted(widths)}")
        self.parts = tuple(p for p in parts if len(p))
        self._width = widths.pop() if widths else 0
        self._offsets = np.cumsum([0, *(len(p) for p in self.parts)])
        self.origin = origin  # (rows, n): this selection is the first n rows of `rows`

    @classmethod
    def of(cls, array: np.ndarray, index: np.ndarray | None = None) -> Rows:
        """`array[index]` (all rows when index is None), unread; a `TokenRows` for an array
        of more than two dimensions (the token cache)."""
        if isinstance(array, Rows):
            return array if index is None else array[index]
        idx = None if index is None else np.asarray(index, dtype=np.int64)
        return _selection_class(array)([_Part(array, idx)])

    @classmethod
    def cat(cls, *selections: np.ndarray | Rows) -> Rows:
        """The selections one after another (train + val for the refit)."""
        parts = [cls.of(s) for s in selections]
        kind = type(parts[0]) if parts else cls
        return kind([p for s in parts for p in s.parts])

    def head(self, n: int) -> Rows:
        """The first n rows, remembering that they are (`origin`)."""
        return type(self)(self._slice_parts(0, n), origin=(self, n))

    def normalized(self) -> Rows:
        """Every row divided by its norm (`probe.normalize=l2`), still unread."""
        return Rows([_Part(p.array, p.index, True) for p in self.parts])

    # -- the array face ------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), self._width)

    @property
    def ndim(self) -> int:
        return 2

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    @property
    def nbytes(self) -> int:
        return len(self) * self._width * 4

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as a new float32 array."""
        stop = min(stop, len(self))
        blocks = [p.read(a, b) for p, a, b in self._spans(start, stop)]
        if len(blocks) == 1:
            return blocks[0]
        return np.concatenate(blocks) if blocks else self._empty()

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            i = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"Rows: row {key} out of range for {len(self)} rows")
            return self.read(i, i + 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise IndexError("Rows: only contiguous slices are read")
            return self.read(start, stop)
        index = np.asarray(key)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
            raise IndexError("Rows: index with a slice or a 1-D integer (or boolean) array")
        return type(self)(self._select(index.astype(np.int64)))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.shape, dtype=dtype or np.float32)
        for s in range(0, len(self), BLOCK):
            out[s : s + BLOCK] = self.read(s, s + BLOCK)
        return out

    # -- internals -----------------------------------------------------------------------
    def _empty(self) -> np.ndarray:
        return np.zeros((0, self._width), np.float32)

    def _spans(self, start: int, stop: int):
        """(part, start, stop) within each part overlapping rows [start, stop)."""
        for i, p in enumerate(self.parts):
            lo, hi = int(self._offsets[i]), int(self._offsets[i + 1])
            a, b = max(start, lo), min(stop, hi)
            if a < b:
                yield p, a - lo, b - lo

    def _slice_parts(self, start: int, stop: int) -> list[_Part]:
        out = []
        for p, a, b in self._spans(start, min(stop, len(self))):
            idx = np.arange(a, b) if p.index is None else p.index[a:b]
            out.append(_Part(p.array, None if (a, b) == (0, len(p)) and p.index is None
                             else idx, p.l2))  # fmt: skip
        return out

    def _select(self, index: np.ndarray) -> list[_Part]:
        """Parts for rows `index` of this selection, in that order (runs of one part kept)."""
        if len(index) and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"Rows: index out of range for {len(self)} rows")
        which = np.searchsorted(self._offsets, index, side="right") - 1
        out = []
        cuts = np.flatnonzero(np.diff(which)) + 1
        for seg in np.split(np.arange(len(index)), cuts):
            if not len(seg):
                continue
            p = self.parts[int(which[seg[0]])]
            local = index[seg] - self._offsets[which[seg[0]]]
            out.append(_Part(p.array, local if p.index is None else p.index[local], p.l2))
        return out


def _selection_class(array: np.ndarray) -> type[Rows]:
    """`Rows` for a 2-D array, `TokenRows` (its own shape and dtype) for more dimensions."""
    if np.ndim(array) <= 2:
        return Rows
    from probe.core.token_rows import TokenRows  # a subclass: imported here, not at the top

    return TokenRows
