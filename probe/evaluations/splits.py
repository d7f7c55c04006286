"""The protocol's train / val / test arrays from the cached source splits, as row selections.

Each split comes back as a `probe.core.rows.Rows` over the cached memory maps: the carve is
an index, not a copy, and rows are read (with plain file reads) only when a consumer asks.
"""

from __future__ import annotations

import numpy as np

from probe.core.rows import Rows
from probe.datasets.base import DatasetFacts
from probe.datasets.splits import stratified_holdout

Pair = tuple[np.ndarray | Rows, np.ndarray]


def protocol_splits(dataset: DatasetFacts, feats: dict[str, Pair]) -> tuple[Pair, Pair, Pair]:
    """train / val / test per the protocol: the official val split, or a stratified carve."""
    X, y = feats["train"]
    Xt, yt = feats["test"]
    test = (Rows.of(Xt), yt)
    if dataset.val.source == "official":
        Xv, yv = feats["val"]
        return (Rows.of(X), y), (Rows.of(Xv), yv), test
    keep, hold = stratified_holdout(
        y, fraction=dataset.val.fraction, count=dataset.val.count, seed=dataset.val.seed
    )
    return (Rows.of(X, keep), y[keep]), (Rows.of(X, hold), y[hold]), test
