"""Deterministic benchmark problems for the solver benchmark.

Synthetic problems are seeded class-conditional Gaussians shaped like real probe features:
class means spread isotropically, within-class noise with a decaying (anisotropic) spectrum,
rows L2-normalised like CLIP embeddings. `separation` is tuned so scikit-learn's test accuracy
lands between 70 and 90 percent (overlapping classes, as real transfer datasets have).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Problem:
    name: str
    X: np.ndarray  # train (N, D) float32
    y: np.ndarray
    Xt: np.ndarray  # test
    yt: np.ndarray
    num_classes: int
    note: str = ""

    @property
    def shape(self) -> str:
        return f"{len(self.y):,} x {self.X.shape[1]} x {self.num_classes}"


def gaussians(
    *,
    name: str,
    n_train: int,
    n_test: int,
    dim: int,
    num_classes: int,
    separation: float,
    seed: int = 0,
    note: str = "",
) -> Problem:
    """Balanced classes; rows drawn in float32 chunks so 1.3M x 1024 fits in host memory."""
    rng = np.random.Generator(np.random.PCG64(seed))
    means = rng.standard_normal((num_classes, dim), dtype=np.float32) * (separation / dim**0.5)
    spectrum = 1.0 / np.sqrt(np.arange(1, dim + 1, dtype=np.float32))
    noise_scale = np.sqrt(spectrum * (dim / spectrum.sum()) / dim).astype(np.float32)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
        X = np.empty((n, dim), dtype=np.float32)
        for s in range(0, n, 65536):
            yc = y[s : s + 65536]
            xc = rng.standard_normal((len(yc), dim), dtype=np.float32) * noise_scale
            xc += means[yc]
            xc /= np.linalg.norm(xc, axis=1, keepdims=True)
            X[s : s + len(yc)] = xc
        return X, y

    X, y = draw(n_train)
    Xt, yt = draw(n_test)
    return Problem(name, X, y, Xt, yt, num_classes, note)


def digits() -> Problem:
    """scikit-learn's 8x8 digits as raw pixels in [0, 1], the demo's seeded 1,347 / 450 split."""
    from sklearn.datasets import load_digits

    from probe.datasets.splits import stratified_holdout

    bunch = load_digits()
    X = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    train, test = stratified_holdout(y, count=450, seed=0)
    return Problem("digits", X[train], y[train], X[test], y[test], 10, "real 8x8 pixels")


# class-mean spread: 0.12 gives about 80% test accuracy at the CIFAR-100 shape (measured on a
# 20,000-row draw); ImageNet's 1,000 classes crowd more, so they are spread wider
SEPARATION = {"cifar100": 0.12, "imagenet": 0.16}


def build(name: str, *, gpu: bool, seed: int = 0, max_train: int | None = None) -> Problem:
    """A named problem; `max_train` caps the training rows of the synthetic ones."""
    if name == "digits":
        return digits()
    prob = _synthetic(name, gpu=gpu, seed=seed, max_train=max_train)
    if max_train and len(prob.y) == max_train:
        prob.note += f", training rows capped at {max_train:,} (--max-train)"
    return prob


def _synthetic(name: str, *, gpu: bool, seed: int, max_train: int | None) -> Problem:
    def rows(n: int) -> int:
        return min(n, max_train) if max_train else n

    if name == "cifar100":
        return gaussians(
            name=name, n_train=rows(50_000), n_test=10_000, dim=1024, num_classes=100,
            separation=SEPARATION[name], seed=seed, note="CIFAR-100 shape",
        )  # fmt: skip
    if name == "imagenet":
        if gpu:
            return gaussians(
                name=name, n_train=rows(1_281_167), n_test=50_000, dim=1024, num_classes=1000,
                separation=SEPARATION[name], seed=seed, note="ImageNet shape",
            )  # fmt: skip
        return gaussians(
            name=name, n_train=rows(64_000), n_test=10_000, dim=1024, num_classes=1000,
            separation=SEPARATION[name], seed=seed,
            note="ImageNet classes and width, 64 images per class (CPU subsample)",
        )  # fmt: skip
    raise ValueError(name)
