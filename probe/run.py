"""The pipeline: features for each source split (cached), then the protocol, then one result.

This is the only module that knows both files and the protocol.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from probe.batching import compile_encoder
from probe.cache import CacheEntry, entry_for, fingerprint
from probe.datasets.base import ImageDataset
from probe.distributed import Context, broadcast, setup, teardown
from probe.encoders.base import resolve_dtype
from probe.errors import ProbeError
from probe.extract import DEFAULT_SHARD_SIZE, extract_split
from probe.factory import make
from probe.protocol import refit_and_test, search
from probe.results import result_path, write_result
from probe.splits import stratified_holdout

log = logging.getLogger(__name__)
STAGES = ("all", "extract", "probe")


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ProbeError(f"device={device} was asked for but no CUDA GPU is usable; use device=cpu")
    return str(device)


def _plain(cfg: Any) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def build_dataset(cfg: DictConfig) -> ImageDataset:
    return make(cfg.dataset)


def cache_entries(cfg: DictConfig, dataset: ImageDataset, dtype: str) -> dict[str, CacheEntry]:
    enc, ds = _plain(cfg.encoder), _plain(cfg.dataset)
    return {
        split: entry_for(
            cache_dir=cfg.cache_dir,
            encoder_name=cfg.encoder.name,
            dataset_name=cfg.dataset.name,
            split=split,
            fp=fingerprint(
                encoder=enc, dataset=ds, split=split, dtype=dtype, data_root=cfg.data_root
            ),
        )
        for split in dataset.source_splits
    }


def extract_options(cfg: DictConfig) -> dict[str, Any]:
    """The `extract:` node (shard size, lock timeout, verification), with defaults."""
    opts = {"shard_size": DEFAULT_SHARD_SIZE, "lock_timeout": 3600, "verify": True}
    opts.update(_plain(cfg.get("extract") or {}))
    return opts


def _unusable(dataset, entries, *, verify: bool) -> dict[str, list[str]]:
    """Split -> why its entry cannot be used (missing, stale, damaged); only bad ones."""
    out = {}
    for s, e in entries.items():
        split = dataset.splits[s]
        problems = e.problems(n=len(split), content_hash=split.content_hash(), checksum=verify)
        if problems:
            out[s] = problems
    return out


def _todo(cfg, dataset, entries, *, verify: bool) -> dict[str, Any]:
    bad = _unusable(dataset, entries, verify=verify)
    if bad and cfg.stage == "probe":
        missing = ", ".join(f"{s} ({entries[s].path}: {'; '.join(p)})" for s, p in bad.items())
        return {
            "error": f"stage=probe needs cached features, but these splits have none usable: "
            f"{missing}. Run `python -m probe stage=extract encoder={cfg.encoder.name} "
            f"dataset={cfg.dataset.name}` first (or stage=all)."
        }
    for s, problems in bad.items():
        if entries[s].meta_path.exists():
            log.warning("%s: cache entry %s rebuilt: %s", s, entries[s].path, "; ".join(problems))
    return {"todo": list(bad)}


def ensure_features(
    cfg: DictConfig,
    dataset: ImageDataset,
    entries: dict[str, CacheEntry],
    *,
    device: str,
    dtype: str,
    ctx: Context | None = None,
) -> float:
    """Extract every split whose entry is missing, stale or damaged; returns seconds spent.

    Under torchrun rank 0 checks the cache and every rank extracts its share of each split.
    """
    ctx = ctx or Context()
    opts = extract_options(cfg)
    plan = _todo(cfg, dataset, entries, verify=bool(opts["verify"])) if ctx.main else None
    plan = broadcast(plan, ctx)
    if "error" in plan:
        raise ProbeError(plan["error"])
    if not plan["todo"]:
        log.info("features cached for all splits: nothing to extract")
        return 0.0
    start = time.perf_counter()
    encoder = make(cfg.encoder, device=device, dtype=dtype)
    if cfg.get("compile") or cfg.encoder.get("compile"):
        encoder = compile_encoder(encoder)
    for split in plan["todo"]:
        extract_split(
            encoder=encoder,
            split=dataset.splits[split],
            entry=entries[split],
            batch_size=int(cfg.batch_size),
            num_workers=cfg.num_workers,
            desc=f"{cfg.encoder.name}/{cfg.dataset.name}/{split}",
            shard_size=int(opts["shard_size"]),
            ctx=ctx,
            lock_timeout=opts["lock_timeout"],
        )
    return time.perf_counter() - start


def protocol_splits(dataset: ImageDataset, feats: dict[str, tuple[np.ndarray, np.ndarray]]):
    """train / val / test arrays per the protocol: official val, or a stratified carve."""
    X, y = feats["train"]
    if dataset.val.source == "official":
        return (np.asarray(X), y), feats["val"], feats["test"]
    keep, hold = stratified_holdout(
        y, fraction=dataset.val.fraction, count=dataset.val.count, seed=dataset.val.seed
    )
    return (np.asarray(X[keep]), y[keep]), (np.asarray(X[hold]), y[hold]), feats["test"]


def warn_sizes(dataset: ImageDataset, sizes: dict[str, int]) -> None:
    for split, expected in (dataset.expected_sizes or {}).items():
        if split in sizes and sizes[split] != expected:
            log.warning(
                "%s: %s split has %d images; the protocol table says %d",
                dataset.name, split, sizes[split], expected,
            )  # fmt: skip


def _warn_unconverged(records: list[dict[str, Any]], cfg: DictConfig) -> None:
    bad = [r["C"] for r in records if not r["converged"]]
    if bad:
        log.warning(
            "%d of %d searched C values did not converge within probe.max_iter=%s (C=%s); "
            "the result records converged=false for them",
            len(bad), len(records), cfg.probe.get("max_iter"), ", ".join(f"{c:.3g}" for c in bad),
        )  # fmt: skip


def run(cfg: DictConfig) -> dict[str, Any] | None:
    if cfg.stage not in STAGES:
        raise ProbeError(f"stage={cfg.stage!r} is not valid; allowed: {', '.join(STAGES)}")
    if int(cfg.batch_size) <= 0:
        raise ProbeError(f"batch_size={cfg.batch_size} must be a positive integer, e.g. 256")
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.encoder.get("dtype", "auto"), device)
    dataset = build_dataset(cfg)
    ctx, device = setup(device)
    entries = cache_entries(cfg, dataset, dtype)
    try:
        extract_seconds = ensure_features(
            cfg, dataset, entries, device=device, dtype=dtype, ctx=ctx
        )
    finally:
        teardown(ctx)
    if cfg.stage == "extract" or not ctx.main:
        return None
    start = time.perf_counter()
    feats = {s: e.load() for s, e in entries.items()}
    warn_sizes(dataset, {s: len(v[1]) for s, v in feats.items()})
    train, val, test = protocol_splits(dataset, feats)
    solver = make(cfg.probe, device=device)
    found = search(
        solver=solver, train=train, val=val, num_classes=dataset.num_classes, metric=dataset.metric
    )
    _warn_unconverged(found.records, cfg)
    both = (np.concatenate([train[0], val[0]]), np.concatenate([train[1], val[1]]))
    test_score, final = refit_and_test(
        solver=solver,
        train=both,
        test=(np.asarray(test[0]), test[1]),
        C=found.best_C,
        num_classes=dataset.num_classes,
        metric=dataset.metric,
        init=found.fits.get(found.best_index),
    )
    record = {
        "encoder": cfg.encoder.name,
        "dataset": cfg.dataset.name,
        "metric": dataset.metric,
        "score": test_score,
        "C": found.best_C,
        "search": found.records,
        "final_fit": {"converged": final.converged, "iterations": final.iterations},
        "converged": bool(final.converged and all(r["converged"] for r in found.records)),
        "n_train": len(train[1]),
        "n_val": len(val[1]),
        "n_test": len(test[1]),
        "num_classes": dataset.num_classes,
        "dataset_info": dataset.info,  # source, counts found, skipped corrupt images
        "feature_dim": int(train[0].shape[1]),
        "backend": solver.name,
        "device": device,
        "dtype": dtype,
        "seconds": {
            "extract": round(extract_seconds, 3),
            "probe": round(time.perf_counter() - start, 3),
        },
        "features": {s: str(e.path) for s, e in entries.items()},
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    path = write_result(result_path(cfg.results_dir, cfg.encoder.name, cfg.dataset.name), record)
    record["path"] = str(path)
    return record
