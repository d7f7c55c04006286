"""The training features, resident once on the device, and the working basis fits run in.

`Resident` holds the rows as float32 in their own coordinates: an exact copy of the source
(cached features are float32), built once, chunk by chunk, from the largest selection the
protocol will fit (train + val: the search's rows are its first rows, see
`probe.core.rows.Rows.head`), so the search and the refit share it and no float64 copy of
X is ever made. A plain in-memory float32 array is used as it is, without a copy.

The working basis is a change of variables on the parameters only. With U the eigenvectors
of the feature covariance and m the feature mean,
    logits = X W^T + b = ((X - m) U) (W U)^T + (b + W m),
so (W_r, b') = (W U, b + W m) has the same objective: ||W_r|| = ||W|| (U is orthogonal)
and the intercept stays unregularised. Centring decouples the intercept from the weights
(CLIP-style embeddings have a large common mean); the principal axes let a per-C diagonal
scaling (`Problem.scale`) equalise the curvature, which on these features spans orders of
magnitude. A pass maps the point to original coordinates (K x D x D, against N x D x K for
the pass) and the gradient back, so X itself is never rotated.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from probe.core.arrays import read_rows
from probe.core.errors import ProbeError
from probe.core.rows import Rows
from probe.solvers.base import ROWS  # rows per chunk: the copy, the mean and covariance


def read_block(X: np.ndarray | Rows, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of X as float32, without making a memory map resident."""
    if isinstance(X, Rows):
        return X.read(start, stop)
    return read_rows(X, start, stop)


def writable_f32(X: np.ndarray) -> np.ndarray:
    """float32, C-contiguous and writable (torch refuses to wrap read-only memory maps)."""
    arr = np.ascontiguousarray(X, dtype=np.float32)
    return arr if arr.flags.writeable else arr.copy()


def _in_memory_f32(X: np.ndarray | Rows) -> bool:
    return (
        isinstance(X, np.ndarray)
        and not isinstance(X, np.memmap)
        and X.dtype == np.float32
        and X.ndim == 2
        and X.flags.c_contiguous
    )


def device_block(X: np.ndarray | Rows | torch.Tensor, start: int, stop: int, device: str):
    """Rows [start, stop) of X as float32 on `device`; a tensor's rows go there directly
    (a GPU tensor never makes a round trip through host memory)."""
    if isinstance(X, torch.Tensor):
        return X[start:stop].to(device=device, dtype=torch.float32)
    return torch.from_numpy(read_block(X, start, stop)).to(device)


def device_copy(X: np.ndarray | Rows | torch.Tensor, device: str) -> torch.Tensor:
    """X as an (N, D) float32 tensor on `device`: the caller's own array when it already is
    one in host memory or is a float32 tensor there (never written to), else filled chunk
    by chunk."""
    if isinstance(X, torch.Tensor):
        return X.to(device=device, dtype=torch.float32)
    if device == "cpu" and _in_memory_f32(X):
        with warnings.catch_warnings():  # read-only arrays: the tensor is only ever read
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(X)
    n, d = X.shape
    out = torch.empty((n, d), dtype=torch.float32, device=device)
    for s in range(0, n, ROWS):
        out[s : s + ROWS] = device_block(X, s, s + ROWS, device)
    return out


class Resident:
    """One float32 copy of the rows on the device, and the working basis of its first
    `n_basis` rows (the first fit's: the search never sees the val rows' statistics)."""

    def __init__(self, X: np.ndarray | Rows, device: str, *, n_basis: int) -> None:
        self.source = X  # kept so the cache key (id) cannot be reused by another array
        self.device = device
        self.X = device_copy(X, device)
        self.mean, self.basis, self.spectrum = _principal_axes(self.X[:n_basis])


class Problem:
    """The first `n` rows of a `Resident` with their labels, remapped to the classes present."""

    def __init__(self, res: Resident, n: int, y: np.ndarray, num_classes: int) -> None:
        self.resident, self.y_source = res, y
        self.present = np.unique(np.asarray(y))
        if len(self.present) < 2:  # nothing to separate (and the curvature 1/K (1 - 1/K) is 0)
            raise ProbeError(
                f"the labels of this fit hold {len(self.present)} class(es) "
                f"({self.present.tolist()[:1]}); a logistic probe needs two or more"
            )
        if self.present.min() < 0 or self.present.max() >= num_classes:
            raise ProbeError(
                f"labels must lie in 0..{num_classes - 1}; found {self.present.min()}.."
                f"{self.present.max()} (check the dataset's num_classes)"
            )
        remap = np.full(num_classes, -1, dtype=np.int64)
        remap[self.present] = np.arange(len(self.present))
        self.labels = remap[np.asarray(y, dtype=np.int64)]  # on the host, for `certify`
        self.device = res.device
        self.y = torch.from_numpy(self.labels).to(self.device)
        self.X = res.X[:n]  # a view: no copy
        self.n, self.dim = self.X.shape
        self.k = len(self.present)
        self.binary = self.k == 2
        self.mean, self.basis, self.spectrum = res.mean, res.basis, res.spectrum
        self._f32: tuple[torch.Tensor, torch.Tensor] | None = None  # see `_cast`

    def scale(self, reg: float, curv: float) -> torch.Tensor:
        """Per-column step scaling (D+1,): 1/sqrt of the curvature a column roughly has.

        A coef column along principal axis j has curvature about curv * s_j + reg, with
        curv the mean softmax curvature sum_c p_c (1 - p_c) / K at the current point (1/K at
        uniform predictions, far less once they are confident); the intercept's is curv.
        L-BFGS adapts the overall scale itself, so only these ratios matter.
        """
        c = max(curv, 1e-12)  # passes.CURV_FLOOR
        return torch.cat([c * self.spectrum + reg, self.spectrum.new_tensor([c])]).rsqrt()

    def to_work(self, coef: torch.Tensor, intercept: torch.Tensor) -> torch.Tensor:
        """(K, D+1) working parameters (W U | b + W m) from original ones."""
        return torch.cat([coef @ self.basis, (intercept + coef @ self.mean)[:, None]], 1)

    def _cast(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The basis and mean in `dtype`: float32 ones (kept) for float32 passes, where a
        change of basis rounded to float32 is below the pass's own rounding."""
        if dtype == torch.float64:
            return self.basis, self.mean
        if self._f32 is None:
            self._f32 = (self.basis.to(torch.float32), self.mean.to(torch.float32))
        return self._f32

    def from_work(
        self, theta: torch.Tensor, *, dtype: torch.dtype = torch.float64
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Original (coef, intercept) of a working point, computed in `dtype`."""
        basis, mean = self._cast(dtype)
        theta = theta.to(dtype)
        coef = theta[:, : self.dim] @ basis.T
        return coef, theta[:, self.dim] - coef @ mean

    def grad_to_work(self, g: torch.Tensor, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The inverse of `grad_to_original` (computed in `dtype`, returned in float64)."""
        basis, mean = self._cast(dtype)
        g = g.to(dtype)
        gb = g[:, self.dim :]
        out = torch.cat([(g[:, : self.dim] - gb * mean) @ basis, gb], 1)
        return out.to(torch.float64)

    def grad_to_original(
        self, g: torch.Tensor, *, dtype: torch.dtype = torch.float64
    ) -> torch.Tensor:
        """The gradient in original coordinates from the working one (chain rule)."""
        basis, mean = self._cast(dtype)
        g = g.to(dtype)
        gb = g[:, self.dim :]
        return torch.cat([g[:, : self.dim] @ basis.T + gb * mean, gb], 1).to(torch.float64)


def _principal_axes(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean (float64), orthonormal eigenvectors and eigenvalues of the covariance.

    The covariance only shapes the preconditioner, so float32 accumulation is enough; the
    eigenvectors come from a float64 eigh, orthonormal to float64 rounding, which is what
    keeps the reparametrisation exact.
    """
    n, d = X.shape
    mean = torch.zeros(d, dtype=torch.float64, device=X.device)
    for s in range(0, n, ROWS):
        mean += X[s : s + ROWS].sum(0, dtype=torch.float64)
    mean /= n
    m32 = mean.to(torch.float32)
    # float32 squares overflow from |x| ~ 1e17 (and vanish below ~1e-20): the covariance is
    # accumulated for X / 2^e (exact) and scaled back in float64; its eigenvectors do not
    # depend on the scale
    shift = _power_of_two(X, m32)
    cov = torch.zeros(d, d, dtype=torch.float64, device=X.device)
    for s in range(0, n, ROWS):
        xc = (X[s : s + ROWS] - m32) * 2.0**-shift
        cov += (xc.T @ xc).to(torch.float64)
    spectrum, basis = torch.linalg.eigh(cov / n)
    return mean, basis, spectrum.clamp_min(0.0) * 4.0**shift


def _power_of_two(X: torch.Tensor, m32: torch.Tensor) -> int:
    """e with max |X - m| / 2^e in [0.5, 1) (0 for constant X): an exact rescaling."""
    top = 0.0
    for s in range(0, len(X), ROWS):
        top = max(top, float((X[s : s + ROWS] - m32).abs().max()))
    return math.frexp(top)[1] if math.isfinite(top) and top > 0 else 0
