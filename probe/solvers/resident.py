"""Training features resident on the device, in a centred principal-axis basis.

The torch solver fits in this basis because it is an exact reparametrisation that makes
L-BFGS converge in far fewer passes. With U the eigenvectors of the feature covariance and m
the feature mean,
    logits = X W^T + b = ((X - m) U) (W U)^T + (b + W m),
so (W_r, b') = (W U, b + W m) has the same objective: ||W_r|| = ||W|| (U is orthogonal)
and the intercept stays unregularised. Centring decouples the intercept from the weights
(CLIP-style embeddings have a large common mean); the principal axes let a per-C diagonal
scaling (`scale`) equalise the curvature, which on these features spans orders of magnitude.
"""

from __future__ import annotations

import numpy as np
import torch

from probe.core.errors import ProbeError

ROWS = 65536  # rows per chunk for the one-off mean, covariance and rotation


def writable_f32(X: np.ndarray) -> np.ndarray:
    """float32, C-contiguous and writable (torch refuses to wrap read-only memory maps)."""
    arr = np.ascontiguousarray(X, dtype=np.float32)
    return arr if arr.flags.writeable else arr.copy()


class Resident:
    """Features on the device (float32, rotated), labels remapped to the classes present."""

    def __init__(self, X: np.ndarray, y: np.ndarray, num_classes: int, device: str) -> None:
        self.source = X  # kept so the cache key (id) cannot be reused by another array
        self.y_source = y
        self.present = np.unique(np.asarray(y))
        if self.present.min() < 0 or self.present.max() >= num_classes:
            raise ProbeError(
                f"labels must lie in 0..{num_classes - 1}; found {self.present.min()}.."
                f"{self.present.max()} (check the dataset's num_classes)"
            )
        remap = np.full(num_classes, -1, dtype=np.int64)
        remap[self.present] = np.arange(len(self.present))
        self.labels = remap[np.asarray(y, dtype=np.int64)]  # on the host, for `certify`
        self.y = torch.from_numpy(self.labels).to(device)
        self.device = device
        arr = writable_f32(X)
        # rotated in place below: copy whenever the tensor would still be the caller's array
        X32 = torch.from_numpy(arr).to(device, copy=bool(np.may_share_memory(arr, X)))
        self.n, self.dim = X32.shape
        self.k = len(self.present)
        self.binary = self.k == 2
        self.mean, self.basis, self.spectrum = _principal_axes(X32)
        _rotate_(X32, self.mean, self.basis)
        self.X = X32
        self._x64: torch.Tensor | None = None

    def certificate_rows(self) -> np.ndarray | torch.Tensor:
        """The source features for the float64 certificate: the float64 copy on the device
        if the float64 phase made one, else the source itself (converted chunk by chunk)."""
        return self._x64 if self._x64 is not None else self.source

    def x64(self) -> torch.Tensor:
        """The source features in float64 and in their own coordinates, for the float64
        finish: no float32 rounding in them, and no N x D x D rotation to build (the
        solver maps points and gradients across instead, at K x D x D)."""
        if self._x64 is None:
            self._x64 = torch.from_numpy(np.asarray(self.source, np.float64)).to(self.device)
        return self._x64

    def scale(self, reg: float, curv: float) -> torch.Tensor:
        """Per-column step scaling (D+1,): 1/sqrt of the curvature a column roughly has.

        A coef column along principal axis j has curvature about curv * s_j + reg, with
        curv the mean softmax curvature sum_c p_c (1 - p_c) / K at the current point (1/K at
        uniform predictions, far less once they are confident); the intercept's is curv.
        L-BFGS adapts the overall scale itself, so only these ratios matter.
        """
        c = max(curv, 1e-12)
        return torch.cat([c * self.spectrum + reg, self.spectrum.new_tensor([c])]).rsqrt()

    def to_work(self, coef: torch.Tensor, intercept: torch.Tensor) -> torch.Tensor:
        """(K, D+1) working parameters (W U | b + W m) from original ones."""
        return torch.cat([coef @ self.basis, (intercept + coef @ self.mean)[:, None]], 1)

    def from_work(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        coef = theta[:, : self.dim] @ self.basis.T
        return coef, theta[:, self.dim] - coef @ self.mean

    def grad_to_work(self, g: torch.Tensor) -> torch.Tensor:
        """The inverse of `grad_to_original`."""
        gb = g[:, self.dim :]
        return torch.cat([(g[:, : self.dim] - gb * self.mean) @ self.basis, gb], 1)

    def grad_to_original(self, g: torch.Tensor) -> torch.Tensor:
        """The gradient in original coordinates from the working one (chain rule)."""
        gb = g[:, self.dim :]
        return torch.cat([g[:, : self.dim] @ self.basis.T + gb * self.mean, gb], 1)


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
    cov = torch.zeros(d, d, dtype=torch.float64, device=X.device)
    for s in range(0, n, ROWS):
        xc = X[s : s + ROWS] - m32
        cov += (xc.T @ xc).to(torch.float64)
    spectrum, basis = torch.linalg.eigh(cov / n)
    return mean, basis, spectrum.clamp_min(0.0)


def _rotate_(X: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor) -> None:
    """X <- (X - m) U, in place, chunk by chunk (no second full copy of X)."""
    m32, u32 = mean.to(torch.float32), basis.to(torch.float32)
    for s in range(0, X.shape[0], ROWS):
        X[s : s + ROWS] = (X[s : s + ROWS] - m32) @ u32
