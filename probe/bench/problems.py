"""Deterministic benchmark problems for the solver benchmark.

Synthetic problems are seeded class-conditional Gaussians shaped like real probe features:
class means spread isotropically, within-class noise with a decaying (anisotropic) spectrum,
rows L2-normalised like CLIP embeddings (or scaled to a larger norm: `strong`, whose best C
is below 0.01, as for un-normalised features). `separation` is tuned so scikit-learn's test
accuracy lands between 70 and 90 percent (overlapping classes, as real transfer datasets have).
`quick=True` shrinks every synthetic problem (QUICK) so a whole bench run takes minutes.
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
    radius: float = 1.0,
) -> Problem:
    """Balanced classes; rows drawn in float32 chunks so 1.3M x 1024 fits in host memory,
    each scaled to norm `radius`."""
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
            xc *= radius / np.linalg.norm(xc, axis=1, keepdims=True)
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
# 20,000-row draw); ImageNet's 1,000 classes crowd more, so they are spread wider; `strong`
# is narrower (256) and its rows of norm 100 move the best C by 1e-4 (C R^2 is invariant)
SEPARATION = {"cifar100": 0.12, "imagenet": 0.16, "strong": 0.2, "fine": 0.15,
              "imagenet-small": 0.24}  # fmt: skip
# (train rows, test rows, width, classes, row norm, note) of each synthetic problem
SHAPES = {
    "cifar100": (50_000, 10_000, 1024, 100, 1.0, "CIFAR-100 shape"),
    "imagenet": (1_281_167, 50_000, 1024, 1000, 1.0, "ImageNet shape"),
    "imagenet-cpu": (64_000, 10_000, 1024, 1000, 1.0,
                     "ImageNet classes and width, 64 images per class (CPU subsample)"),
    "strong": (10_000, 10_000, 256, 100, 100.0,
               "rows of norm 100 (un-normalised features): best C below 0.01"),
    "fine": (6_667, 3_333, 768, 100, 1.0,
             "fine-grained shape: FGVC-Aircraft's trainval and test sizes, ViT-B width"),
    "imagenet-small": (16_000, 10_000, 512, 1000, 1.0,
                       "ImageNet's classes, 16 rows per class, width 512: small enough for "
                       "scikit-learn's search on CPU"),
}  # fmt: skip
QUICK = {"rows": 4_000, "rows_per_class": 8, "test": 2_000, "width": 256}
PROBLEMS = ("digits", "cifar100", "strong", "fine", "imagenet-small", "imagenet")


def build(
    name: str, *, gpu: bool, seed: int = 0, max_train: int | None = None, quick: bool = False
) -> Problem:
    """A named problem; `max_train` caps the training rows of the synthetic ones."""
    if name == "digits":
        return digits()
    if name not in PROBLEMS:
        raise ValueError(name)
    key = "imagenet-cpu" if name == "imagenet" and not gpu else name
    n_train, n_test, dim, k, radius, note = SHAPES[key]
    if quick:
        n_train = min(n_train, max(QUICK["rows"], QUICK["rows_per_class"] * k))
        n_test, dim = min(n_test, QUICK["test"]), QUICK["width"]
        note += f", --quick: {n_train:,} rows, width {dim}"
    if max_train and n_train > max_train:
        n_train = max_train
        note += f", training rows capped at {max_train:,} (--max-train)"
    return gaussians(name=name, n_train=n_train, n_test=n_test, dim=dim, num_classes=k,
                     separation=SEPARATION[name], seed=seed, note=note,
                     radius=radius)  # fmt: skip
