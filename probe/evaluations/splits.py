"""The protocol's train / val / test arrays from the cached source splits."""

from __future__ import annotations

import numpy as np

from probe.datasets.base import DatasetFacts
from probe.datasets.splits import stratified_holdout

Pair = tuple[np.ndarray, np.ndarray]


def protocol_splits(dataset: DatasetFacts, feats: dict[str, Pair]) -> tuple[Pair, Pair, Pair]:
    """train / val / test per the protocol: the official val split, or a stratified carve."""
    X, y = feats["train"]
    if dataset.val.source == "official":
        return (np.asarray(X), y), feats["val"], feats["test"]
    keep, hold = stratified_holdout(
        y, fraction=dataset.val.fraction, count=dataset.val.count, seed=dataset.val.seed
    )
    return (np.asarray(X[keep]), y[keep]), (np.asarray(X[hold]), y[hold]), feats["test"]
