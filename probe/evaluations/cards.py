"""A protocol card's linear-probe rules: where C is chosen, how, what the final fit sees.

A card (`configs/protocol/*.yaml`, `protocol=NAME`) names its parts through `_target_`, so a
paper's protocol is a YAML file; only a paper that does something new (a new val rule, a new
search) adds one function here or one class in `search.py`. The pipeline never branches on a
card's name.

The val rules take the dataset's facts and its cached source splits and return the
(train, val, test) row selections, as `splits.protocol_splits` (the CLIP rule) does:

- `random_fraction`: dinov2's rule (facebookresearch/dinov2 `dinov2/eval/log_regression.py`
  lines 294-301 at b8931f7): `torch.manual_seed(0)`, `torch.randperm(N)`, the first N // 10
  permuted rows choose C, the rest train.
- `shuffled_stratified_fraction`: dinov3's rule (facebookresearch/dinov3 `dinov3/eval/data.py`
  `split_train_val_datasets` lines 162-182 and `_shuffle_dataset` lines 93-100 at 6876159):
  a `torch.Generator` seeded 0 permutes the rows; per class, in that order, the first
  max(1, int(0.1 * n_c)) rows choose C (none for a class of one).
- `train_only`: no val at all (a fixed C, as deepglint/unicom's example fits one C on train).
- `official_val_or_train_only`: CLIP_benchmark's linear probe (LAION-AI/CLIP_benchmark
  `clip_benchmark/cli.py` lines 348-360 at 48de38c): the dataset's official val split when
  it has one (`--val_split`), else no val at all (its default: neither `--val_split` nor
  `--val_proportion`), where `linear_probe.py` lines 286-288 train on train at weight decay 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.core.rows import Rows
from probe.datasets.base import DatasetFacts
from probe.evaluations.search import Strategy
from probe.evaluations.splits import protocol_splits

Pair = tuple[np.ndarray | Rows, np.ndarray]
Splits = Callable[[DatasetFacts, dict[str, Pair]], tuple[Pair, Pair, Pair]]
POOLS = ("train", "train+val")


@dataclass(frozen=True)
class Rules:
    """What a card fixes of the linear probe (see the module docstring)."""

    splits: Splits
    search: Strategy | None = None  # the C search of eval=linear (None: a card without it)
    refit_on: str = "train+val"  # the rows of the final fit: train + val, or train alone
    metric: str | None = None  # None: the dataset's own metric


def _pool(dataset: DatasetFacts, feats: dict[str, Pair], pool: str) -> Pair:
    """The labelled rows a rule draws its val from: train, or train then the official val."""
    if pool not in POOLS:
        raise ProbeError(f"protocol val pool={pool!r} unknown; allowed: {', '.join(POOLS)}")
    X, y = feats["train"]
    if pool == "train" or "val" not in feats:
        return Rows.of(X), np.asarray(y)
    Xv, yv = feats["val"]
    return Rows.cat(X, Xv), np.concatenate([np.asarray(y), np.asarray(yv)])


def _test(feats: dict[str, Pair]) -> Pair:
    Xt, yt = feats["test"]
    return Rows.of(Xt), yt


def random_fraction(
    dataset: DatasetFacts, feats: dict[str, Pair], *, one_in: int = 10, seed: int = 0,
    pool: str = "train+val",
) -> tuple[Pair, Pair, Pair]:  # fmt: skip
    """dinov2: `indices = torch.randperm(N)` after `torch.manual_seed(seed)`; val is
    `indices[: N // one_in]`, train `indices[N // one_in :]`, both in permuted order."""
    import torch

    X, y = _pool(dataset, feats, pool)
    n = len(y)
    gen = torch.Generator().manual_seed(int(seed))  # the state torch.manual_seed(seed) sets
    indices = torch.randperm(n, generator=gen).numpy()
    cut = n // int(one_in)
    if cut < 1:
        raise ProbeError(f"{dataset.name}: {n} labelled rows give no val rows at 1 in {one_in}")
    val, train = indices[:cut], indices[cut:]
    return (X[train], y[train]), (X[val], y[val]), _test(feats)


def shuffled_stratified_fraction(
    dataset: DatasetFacts, feats: dict[str, Pair], *, fraction: float = 0.1, seed: int = 0,
    pool: str = "train+val",
) -> tuple[Pair, Pair, Pair]:  # fmt: skip
    """dinov3: shuffle with a generator seeded `seed`, then per class (stable order) the first
    `max(1, int(fraction * n_c))` shuffled rows are val, none if the class has one row."""
    import torch

    X, y = _pool(dataset, feats, pool)
    if np.ndim(y) != 1:
        raise ProbeError(
            f"{dataset.name}: the per-class val rule of this card takes one label per image; "
            "a multi-label dataset runs under protocol=clip (its official val split)"
        )
    gen = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(len(y), generator=gen).numpy()
    shuffled = np.asarray(y)[order]
    val_mask = np.zeros(len(y), dtype=bool)
    by_label = np.argsort(shuffled, kind="stable")  # torch.sort(labels, stable=True)
    labels, starts = np.unique(shuffled[by_label], return_index=True)
    for start, stop in zip(starts, [*starts[1:], len(by_label)], strict=True):
        members = by_label[start:stop]
        take = max(1, int(fraction * len(members))) if len(members) > 1 else 0
        val_mask[members[:take]] = True
    val, train = order[np.flatnonzero(val_mask)], order[np.flatnonzero(~val_mask)]
    return (X[train], y[train]), (X[val], y[val]), _test(feats)


def train_only(dataset: DatasetFacts, feats: dict[str, Pair], **_: Any) -> tuple[Pair, Pair, Pair]:
    """The train split alone and an empty val (a card with a fixed C never looks at val)."""
    X, y = feats["train"]
    y = np.asarray(y)
    return (Rows.of(X), y), (Rows.of(X, np.zeros(0, np.int64)), y[:0]), _test(feats)


def official_val_or_train_only(
    dataset: DatasetFacts, feats: dict[str, Pair], **_: Any
) -> tuple[Pair, Pair, Pair]:
    """The official val split if the dataset has one, else train alone and an empty val."""
    if dataset.val.source == "official":
        return protocol_splits(dataset, feats)
    return train_only(dataset, feats)
