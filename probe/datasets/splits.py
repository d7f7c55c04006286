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


def per_class_subsets(
    labels: np.ndarray, *, sizes: dict[str, int], seed: int, dataset: str, classes: list[str]
) -> dict[str, np.ndarray]:
    """Disjoint, seeded per-class draws: `sizes[name]` images of every class for each subset.

    For the datasets the CLIP paper sampled its own subsets of (EuroSAT, RESISC45): per class,
    in the order the images are given (sorted paths), a random permutation; its first
    `sizes[first]` go to the first subset, the next `sizes[second]` to the second, and any
    rest to none. Each class draws from its own stream, PCG64 seeded with `(seed, class
    index)`, so a copy missing one image changes that class's draw only.
    """
    labels = np.asarray(labels)
    need = sum(sizes.values())
    out: dict[str, list[np.ndarray]] = {name: [] for name in sizes}
    for c, name in enumerate(classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) < need:
            wanted = " + ".join(f"{k}={v}" for k, v in sizes.items())
            raise ProbeError(
                f"dataset {dataset}: class {name!r} has {len(idx)} images, fewer than the {need} "
                f"its per-class draw takes ({wanted}); the copy is incomplete: re-extract it"
            )
        order = np.random.Generator(np.random.PCG64([seed, c])).permutation(idx)
        start = 0
        for subset, k in sizes.items():
            out[subset].append(np.sort(order[start : start + k]))
            start += k
    empty = np.zeros(0, dtype=np.int64)
    return {k: np.sort(np.concatenate(v)) if v else empty for k, v in out.items()}
