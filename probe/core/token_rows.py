"""Row selections of the token cache: N x T x D rows, read in their own dtype (float16).

`Rows` (`probe/core/rows.py`) serves N x D float32 features; a token cache entry is N x T x D
float16 (60 GB for CIFAR-100's train split at L/14, 336 px), so a copy to float32 would
double what is read. `TokenRows` is the same selection (which rows of which arrays, in which
order, unread until asked) with the rows' own shape and dtype, so the protocol's splits
(`probe/evaluations/splits.py`, `cards.py`: `Rows.of`, `Rows.cat`, `head`, `X[index]`) carve
the token cache exactly as they carve pooled features.

What an evaluation on tokens (`eval=attentive`) may use, the face of a numpy N x T x D array:
`len(X)`, `X.shape`, `X.ndim`, `X.dtype`, `X.nbytes`; `X[a:b]` and `X.read(a, b)` read rows
a..b-1 into a new array; `X[i]` reads row i (T x D); `X[index]` (an integer or boolean array)
is a new selection, itself array-like and unread, that `np.asarray` reads (in blocks of about
`BLOCK_BYTES`). Reads from a memory-mapped entry are plain file reads, one per run of
consecutive rows, so the map's pages are never charged to the process.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from probe.core.errors import ProbeError
from probe.core.rows import Rows, _Part

BLOCK_BYTES = 1 << 26  # 64 MiB of rows per read when a whole selection is asked for


class TokenRows(Rows):
    """An ordered selection of rows from one or more arrays of the same row shape (T, D)."""

    def __init__(self, parts: Sequence[_Part], *, origin: tuple[Rows, int] | None = None):
        rows = {tuple(p.array.shape[1:]) for p in parts}
        if len(rows) > 1:
            raise ValueError(f"TokenRows: parts have different row shapes {sorted(rows)}")
        self.parts = tuple(p for p in parts if len(p))
        self._row = rows.pop() if rows else (0, 0)
        dtypes = [np.dtype(p.array.dtype) for p in parts]
        self._dtype = np.result_type(*dtypes) if dtypes else np.dtype(np.float16)
        self._width = self._row[-1]
        self._offsets = np.cumsum([0, *(len(p) for p in self.parts)])
        self.origin = origin

    def normalized(self) -> Rows:
        raise ProbeError(
            "probe.normalize=l2 normalises pooled feature rows; the token cache is read as "
            "extracted (eval=attentive normalises its tokens itself): remove it"
        )

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self._row)

    @property
    def ndim(self) -> int:
        return 1 + len(self._row)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def nbytes(self) -> int:
        return len(self) * int(np.prod(self._row)) * self._dtype.itemsize

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as a new array of the cache's dtype, N x T x D."""
        stop = min(stop, len(self))
        blocks = [p.read(a, b, dtype=self._dtype) for p, a, b in self._spans(start, stop)]
        if len(blocks) == 1:
            return blocks[0]
        return np.concatenate(blocks) if blocks else self._empty()

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.shape, dtype=dtype or self._dtype)
        step = self.block_rows()
        for s in range(0, len(self), step):
            out[s : s + step] = self.read(s, s + step)
        return out

    def block_rows(self, budget: int = BLOCK_BYTES) -> int:
        """Rows per read that keep one read near `budget` bytes (at least one row)."""
        row = int(np.prod(self._row)) * self._dtype.itemsize
        return max(1, budget // max(row, 1))

    def _empty(self) -> np.ndarray:
        return np.zeros((0, *self._row), self._dtype)
