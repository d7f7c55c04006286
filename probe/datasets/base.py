"""The dataset abstraction every family (digits, torchvision, image folders, hub copies) yields.

A dataset is a set of *source splits* (the splits that exist on disk: `train`, `test`, and
`val` where the dataset has an official one). Features are cached per source split; the
protocol carves a validation split out of `train` afterwards, so changing the carve never
re-extracts anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

METRICS = ("top1", "mean_per_class", "map11", "roc_auc", "top1_top5_mean")
# metrics of multi-label datasets: labels are N x K (one column per class), never one label
# per image; scored from per-class scores (`probe.evaluations.voc_map`), not predicted classes
MULTILABEL_METRICS = ("map11",)
# single-label metrics read from a head's per-class scores, not from its predicted class alone
# (`probe.evaluations.metrics`): ROC AUC ranks the images by the positive class's decision
# value (a binary dataset, the positive class label 1), and the mean of top-1 and top-5
# accuracy needs each image's five best classes
SCORE_METRICS = ("roc_auc", "top1_top5_mean")


@dataclass
class Split:
    """One source split: a list of items and their integer labels.

    Labels are one class index per item (N,), or for a multi-label dataset one row of K
    per-class flags per item (N x K; VOC 2007 keeps its devkit's 1 / 0 / -1, `voc2007`).

    `load(item)` turns an item (a path, an index, an array row) into what the encoder's
    transform takes (a PIL image, or a feature vector for precomputed features). `ids` name
    the samples stably (relative paths, indices) so the cache can tell two copies apart.
    `block(a, b)`, where a family has it, returns samples a..b-1 at once as one array (rows of
    precomputed features), so extraction can copy them in blocks instead of one by one.
    """

    items: Sequence[Any]
    labels: np.ndarray
    load: Callable[[Any], Any]
    ids: Sequence[str] | None = None
    block: Callable[[int, int], Any] | None = None
    _hash: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.items) != len(self.labels):
            raise ValueError(f"{len(self.items)} items but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def content_hash(self) -> str:
        """A digest of the sample ids and labels: the cache checks it before trusting rows.

        Computed once per split (a run asks for it at the cache check, under the lock, in the
        meta record and for the corrupt-image scan; ImageNet train has 1.28M ids).
        """
        if self._hash is None:
            h = hashlib.sha256()
            h.update(np.ascontiguousarray(self.labels).tobytes())
            ids = self.ids if self.ids is not None else range(len(self.labels))
            for i in ids:
                h.update(str(i).encode())
                h.update(b"\0")
            self._hash = h.hexdigest()
        return self._hash


@dataclass
class ValSpec:
    """Where validation comes from: the official split, or a stratified carve from train."""

    source: str = "carve"  # "official" or "carve"
    fraction: float | None = 0.2
    count: int | None = None
    seed: int = 0

    @classmethod
    def from_cfg(cls, cfg: Any) -> ValSpec:
        from probe.core.errors import ProbeError

        cfg = dict(cfg or {})
        spec = cls(**{k: cfg[k] for k in ("source", "fraction", "count", "seed") if k in cfg})
        if spec.source not in ("official", "carve"):
            raise ProbeError(
                f"dataset.val.source={spec.source!r} is not valid; use 'official' or 'carve'"
            )
        if spec.source == "carve" and spec.count is None:
            if spec.fraction is None or not 0 < float(spec.fraction) < 1:
                raise ProbeError(
                    f"dataset.val.fraction={spec.fraction!r} must be in (0, 1), e.g. 0.2"
                )
        return spec


VAL_RULES = ("config", "present")


class DatasetFacts(Protocol):
    """What the probe stage reads of a dataset: an `ImageDataset`, or its facts as the cache
    recorded them (`probe.features.cached`, for `stage=probe` without images)."""

    name: str
    num_classes: int
    metric: str
    val: ValSpec
    expected_sizes: dict[str, int] | None
    info: dict[str, Any]


def resolve_val(val: Any, *, has_val: bool, rule: str = "config") -> ValSpec:
    """The config's `val:` against the source: whether it has a val split, and the family's rule.

    `rule="config"` (the image families): `source: auto` is the official val split if there
    is one, else a carve; `official` and `carve` are taken as written. `rule="present"`
    (`dataset=npz`): a val split in the source is always the official val. The probe stage
    resolves it again from what meta.json recorded, so both stages decide alike.
    """
    cfg = dict(val or {})
    if cfg.get("source", "carve") == "auto" or (rule == "present" and has_val):
        cfg["source"] = "official" if has_val else "carve"
    return ValSpec.from_cfg(cfg)


def check_metric(metric: str) -> str:
    from probe.core.errors import ProbeError

    if metric not in METRICS:
        raise ProbeError(f"dataset.metric={metric!r} is not known; allowed: {', '.join(METRICS)}")
    return metric


TOP = 5  # top-5: the metric top1_top5_mean needs more classes than this


def check_metric_classes(*, dataset: str, metric: str, num_classes: int) -> None:
    """ROC AUC scores a binary dataset; the mean of top-1 and top-5 needs more than 5
    classes (with 5 or fewer, every label is among the five best: top-5 is 100 by
    construction)."""
    from probe.core.errors import ProbeError

    if metric == "roc_auc" and num_classes != 2:
        raise ProbeError(
            f"dataset {dataset}: dataset.metric=roc_auc scores two classes (the positive one "
            f"is label 1), but the dataset has {num_classes}; use dataset.metric=top1 or "
            "mean_per_class"
        )
    if metric == "top1_top5_mean" and num_classes <= TOP:
        raise ProbeError(
            f"dataset {dataset}: dataset.metric=top1_top5_mean needs more than {TOP} classes "
            f"(with {num_classes} every label is among the {TOP} best); use dataset.metric=top1"
        )


def check_label_shape(*, dataset: str, metric: str, split: str, shape: tuple[int, ...]) -> None:
    """A multi-label metric needs N x K labels and a single-label one N labels: a dataset
    never reaches a metric that would misread its labels."""
    from probe.core.errors import ProbeError

    multi = metric in MULTILABEL_METRICS
    if multi and len(shape) != 2:
        raise ProbeError(
            f"dataset {dataset}: dataset.metric={metric} scores multi-label (N x K) labels, but "
            f"the {split} labels are one per image {tuple(shape)}; use dataset.metric=top1 or "
            "mean_per_class"
        )
    if not multi and len(shape) != 1:
        raise ProbeError(
            f"dataset {dataset}: the {split} labels are multi-label {tuple(shape)}, which "
            f"dataset.metric={metric} cannot score; use dataset.metric="
            f"{'|'.join(MULTILABEL_METRICS)} (eval=linear, one-vs-rest)"
        )


@dataclass
class ImageDataset:
    """What a dataset family returns: named source splits plus the protocol's metadata."""

    name: str
    num_classes: int
    metric: str
    splits: dict[str, Split]
    val: ValSpec = field(default_factory=ValSpec)
    classes: list[str] | None = None
    expected_sizes: dict[str, int] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    found: list[str] | None = None  # the source's splits, a val carved away included
    val_rule: str = "config"  # how `val:` meets the source (`resolve_val`)
    stamp: dict[str, Any] | None = None  # a one-file source's path, size and mtime (npz)

    def __post_init__(self) -> None:
        from probe.core.errors import ProbeError

        check_metric(self.metric)
        found = ", ".join(self.splits) or "none"
        for needed in ("train", "test"):
            if needed not in self.splits:
                raise ProbeError(
                    f"dataset {self.name}: no {needed} split (found: {found}); the protocol "
                    f"needs train and test: add the {needed}/ folder or map a split to it "
                    f"(e.g. dataset.splits.{needed}=NAME for a Hugging Face copy)"
                )
        check_metric_classes(dataset=self.name, metric=self.metric, num_classes=self.num_classes)
        for split_name, split in self.splits.items():
            check_label_shape(dataset=self.name, metric=self.metric, split=split_name,
                              shape=split.labels.shape)  # fmt: skip
        if self.val.source == "official" and "val" not in self.splits:
            raise ProbeError(
                f"dataset {self.name}: dataset.val.source=official but there is no val split "
                f"(found: {found}); set dataset.val.source=carve to hold out part of train, "
                "or add the val split"
            )

    @property
    def source_splits(self) -> list[str]:
        return [s for s in ("train", "val", "test") if s in self.splits]

    def about(self) -> dict[str, Any]:
        """What the probe stage needs besides the features, for each entry's meta.json: the
        class count, the splits the source has and its val rule, the dataset's own record."""
        found = self.found or list(self.splits)
        about = {"num_classes": self.num_classes,
                 "splits": [s for s in ("train", "val", "test") if s in found],
                 "val_rule": self.val_rule, "info": self.info}  # fmt: skip
        return {**about, "stamp": self.stamp} if self.stamp else about
