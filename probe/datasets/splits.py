"""Deterministic, class-stratified validation carving (the protocol's hold-out).

The same labels and seed give the same indices on every machine: we draw with numpy's
PCG64 generator seeded explicitly and never depend on set or dict ordering.
"""

from __future__ import annotations

import numpy as np

from probe.core.errors import ProbeError


def stratified_holdout(
    labels: np.ndarray, *, fraction: float | None = None, count: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (keep, holdout), holding out about `fraction` (or `count`) per class.

    Each class keeps at least one training example; per-class hold-out sizes are rounded so the
    total matches `count` (largest remainders first) when a count is asked for.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:  # a multi-label row belongs to many classes: no stratum to draw from
        raise ProbeError(
            f"dataset.val.source=carve holds out a class-stratified share of train, which needs "
            f"one label per image, but the labels are multi-label {labels.shape}; use the "
            "dataset's official val split (dataset.val.source=official)"
        )
    n = len(labels)
    if count is not None:
        if not 0 < count < n:
            raise ProbeError(f"dataset.val.count={count} must be between 1 and {n - 1}")
        fraction = count / n
    elif fraction is None or not 0 < fraction < 1:
        raise ProbeError(f"dataset.val.fraction={fraction!r} must be in (0, 1), e.g. 0.2")
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * fraction
    take = np.floor(exact).astype(int)
    target = int(round(n * fraction)) if count is None else count
    order = np.argsort(-(exact - take), kind="stable")
    for i in order[: max(0, target - int(take.sum()))]:
        take[i] += 1
    take = np.minimum(take, counts - 1)
    rng = np.random.Generator(np.random.PCG64(seed))
    hold = []
    for cls, k in zip(classes, take, strict=True):
        idx = np.flatnonzero(labels == cls)
        if k > 0:
            hold.append(np.sort(rng.permutation(idx)[:k]))
    holdout = np.sort(np.concatenate(hold)) if hold else np.zeros(0, dtype=np.int64)
    mask = np.ones(n, dtype=bool)
    mask[holdout] = False
    return np.flatnonzero(mask), holdout
