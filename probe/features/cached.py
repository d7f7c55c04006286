"""`stage=probe` from the cache alone: no images mounted, listed or decoded.

The entries are found by fingerprint: the very directories `stage=extract` filled, named from
the encoder and dataset configs alone. Each is checked against its meta.json (fingerprint,
shapes, sizes) and, with `extract.verify`, the SHA-256 of its rows. The `dataset` block each
entry's meta.json got at extraction (class count, the splits the source has and its val
rule, the dataset's own record) stands in for the dataset; the val split is decided from it
with the config's `val:` by the rule the dataset itself applies (`resolve_val`), so changing
the carve still needs no re-extraction. What the images hold now is not compared here: a
`stage=extract` or `stage=all` run checks the cache against them (ids, labels, counts). A
one-file source (`dataset=npz`) that is still there is stat-ed: replaced since the
extraction (or another file behind its name: a re-pointed link), it is hashed and checked
as before.

An entry's dtype: `encoder.dtype=auto` means bf16 on CUDA and fp32 elsewhere at extraction,
so a CPU node probing what a GPU node extracted looks for both, this device's first.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
from omegaconf import DictConfig

from probe.core.device import auto_dtype
from probe.core.errors import ProbeError
from probe.datasets.base import (
    ValSpec,
    check_label_shape,
    check_metric,
    check_metric_classes,
    resolve_val,
)
from probe.encoders.base import compute_dtype
from probe.features.cache import CacheEntry
from probe.features.stage import cache_entries, extract_options, needs_extraction, warn_drift

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


@dataclass
class CachedDataset:
    """What the probe stage reads of a dataset (the attributes it reads of an `ImageDataset`)."""

    name: str
    num_classes: int
    metric: str
    val: ValSpec
    expected_sizes: dict[str, int] | None
    info: dict[str, Any]
    source_splits: list[str]


def dtype_candidates(cfg: DictConfig, device: str) -> list[str]:
    """The dtypes this config's features may have been computed in, this device's first."""
    first = compute_dtype(cfg.encoder, device)
    if str(cfg.encoder.get("dtype", "auto")) != "auto":
        return [first]
    return list(dict.fromkeys([first, auto_dtype("cuda"), auto_dtype("cpu")]))


def probe_inputs(
    cfg: DictConfig, *, device: str
) -> tuple[CachedDataset, dict[str, CacheEntry], str] | None:
    """The dataset's facts, the probed kind's entries and their dtype, from the cache alone.

    None when the entries predate meta.json's `dataset` block: the caller then builds the
    dataset to check them (a `stage=extract` or `stage=all` run adds the block).
    """
    candidates = dtype_candidates(cfg, device)
    trains = {d: cache_entries(cfg, ["train"], d) for d in candidates}
    dtype = next((d for d in candidates if trains[d]["train"].meta() is not None), None)
    if dtype is None:
        first = trains[candidates[0]]
        _fail(cfg, first, {"train": first["train"].problems(checksum=False)})
    train = trains[dtype]["train"]
    about = (train.meta() or {}).get("dataset")
    if not isinstance(about, dict):
        log.info("%s: cached before meta.json recorded the dataset; building the dataset to "
                 "check it (a stage=extract run adds the record)", train.path)  # fmt: skip
        return None
    changed = _changed(about.get("stamp"), cfg.dataset)
    if changed:
        log.info("%s: checking it against the cache", changed)
        return None
    if dtype != candidates[0]:
        log.info("probing features computed in %s (encoder.dtype=auto at extraction)", dtype)
    facts = _facts(cfg, about)
    entries = cache_entries(cfg, facts.source_splits, dtype)
    verify = bool(extract_options(cfg)["verify"])
    bad = {s: p for s, e in entries.items() if (p := e.problems(checksum=verify))}
    if bad:
        _fail(cfg, entries, bad)
    _check_labels(facts, entries)
    warn_drift(entries)
    log.info("features cached for all splits (%s): probing from the cache alone",
             ", ".join(entries))  # fmt: skip
    return facts, entries, dtype


STAT_FIELDS = {"size": "st_size", "mtime_ns": "st_mtime_ns", "ctime_ns": "st_ctime_ns",
               "inode": "st_ino"}  # fmt: skip


def _changed(stamp: dict[str, Any] | None, dataset: Any) -> str | None:
    """How a one-file source (npz) present now is not the file that was extracted, or None.

    The file is the one the config's name (`dataset.path`) leads to now, by its real path: a
    link re-pointed to another file, or a relative path from another directory, is another
    file even though the name is the same. The extracted file rewritten in place shows in its
    size, times or inode. A name that leads to no file: the cache is all the probe needs.
    """
    if not stamp:
        return None
    given = dataset.get(stamp.get("key", "path"))
    now = os.path.realpath(os.path.expanduser(str(given))) if given else stamp["path"]
    try:
        st = os.stat(now)
    except OSError:
        return None  # gone: the cache is all the probe needs
    if now != stamp["path"]:
        return f"dataset.{stamp.get('key', 'path')}={given} now leads to {now}, not {stamp['path']}"
    if any(k in stamp and stamp[k] != getattr(st, f) for k, f in STAT_FIELDS.items()):
        return f"{now} changed since it was extracted"
    return None


def _facts(cfg: DictConfig, about: dict[str, Any]) -> CachedDataset:
    ds = cfg.dataset
    has_val = "val" in about.get("splits", [])
    val = resolve_val(ds.get("val"), has_val=has_val, rule=str(about.get("val_rule", "config")))
    if val.source == "official" and not has_val:
        raise ProbeError(
            f"dataset {ds.name}: dataset.val.source=official but there is no val split (the "
            f"extraction found {', '.join(about.get('splits', []))}); set dataset.val.source="
            "carve to hold out part of train, or add the val split and extract again"
        )
    num_classes = int(about["num_classes"] if ds.get("num_classes", "auto") == "auto"
                      else ds.get("num_classes"))  # fmt: skip
    metric = check_metric(str(ds.get("metric", "top1")))
    check_metric_classes(dataset=str(ds.name), metric=metric, num_classes=num_classes)
    sizes = ds.get("expected_sizes")
    return CachedDataset(
        name=str(ds.name),
        num_classes=num_classes,
        metric=metric,
        val=val,
        expected_sizes={str(k): int(v) for k, v in sizes.items()} if sizes else None,
        info=dict(about.get("info") or {}),
        source_splits=[s for s in SPLITS if s != "val" or val.source == "official"],
    )


def _check_labels(facts: CachedDataset, entries: dict[str, CacheEntry]) -> None:
    """Class indices within num_classes; multi-label rows of num_classes flags (-1, 0, 1),
    and only under a multi-label metric (`check_label_shape`)."""
    for split, entry in entries.items():
        labels = np.load(entry.path / "labels.npy", mmap_mode="r", allow_pickle=False)
        check_label_shape(dataset=facts.name, metric=facts.metric, split=split,
                          shape=labels.shape)  # fmt: skip
        lo, hi = int(labels.min()), int(labels.max())
        if labels.ndim == 2 and (labels.shape[1] != facts.num_classes or lo < -1 or hi > 1):
            raise ProbeError(
                f"dataset {facts.name}: {split} labels are {labels.shape[1]} columns of flags "
                f"{lo}..{hi}, not num_classes={facts.num_classes} columns of -1, 0, 1; delete "
                f"the entry {entry.path} and extract again"
            )
        if labels.ndim == 1 and (lo < 0 or hi >= facts.num_classes):
            raise ProbeError(
                f"dataset {facts.name}: {split} labels span {lo}..{hi} but num_classes="
                f"{facts.num_classes}; set dataset.num_classes to the real class count"
            )


def _fail(cfg: DictConfig, entries: dict[str, CacheEntry], bad: dict[str, list[str]]) -> NoReturn:
    raise ProbeError(needs_extraction(cfg, entries, bad))
