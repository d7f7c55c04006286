"""The pipeline of one `python -m probe` run: the feature stage, then the protocol, one result.

The only module that knows both files and the protocol: it takes the composed config, asks
`features` for cached arrays, hands them to `evaluations` and gives the outcome to `report`.
Nothing in a stage package imports it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from probe.core.device import resolve_device
from probe.core.errors import ProbeError
from probe.core.factory import make
from probe.datasets.base import ImageDataset
from probe.encoders.base import compute_dtype
from probe.evaluations.heads import test_outputs, top5_accuracy
from probe.evaluations.linear import refit_and_test, search
from probe.evaluations.normalize import check_normalize, normalize_rows
from probe.evaluations.splits import protocol_splits
from probe.features.distributed import setup, teardown
from probe.features.stage import cache_entries, ensure_features, pin_encoder
from probe.report.heads import write_head
from probe.report.record import result_name, result_path, write_result

log = logging.getLogger(__name__)
STAGES = ("all", "extract", "probe")


def build_dataset(cfg: DictConfig) -> ImageDataset:
    return make(cfg.dataset)


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
    normalize = check_normalize(cfg.probe.get("normalize"))
    device = resolve_device(cfg.device)
    dtype = compute_dtype(cfg.encoder, device)
    dataset = build_dataset(cfg)
    ctx, device = setup(device)
    try:
        cfg, weights = pin_encoder(cfg, ctx)  # encoder.revision: the commit it names now
        entries = cache_entries(cfg, dataset, dtype)
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
    train, val, test = ((normalize_rows(X, normalize), y) for X, y in (train, val, test))
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
    outputs = test_outputs(solver, final, test)  # labels, the predictions scored, top-5
    name = result_name(cfg.encoder, cfg.probe)
    path = result_path(cfg.results_dir, name, cfg.dataset.name)
    head = write_head(path, coef=final.coef, intercept=final.intercept, C=found.best_C,
                      outputs=outputs)  # fmt: skip
    record = {
        "encoder": name,
        "dataset": cfg.dataset.name,
        "metric": dataset.metric,
        "score": test_score,
        "top5": top5_accuracy(outputs),  # percent; null with fewer than 5 classes
        "head": head,  # the .npz beside this file: head, test predictions, its SHA-256
        "C": found.best_C,
        "search": found.records,
        "final_fit": {
            "converged": final.converged,
            "iterations": final.iterations,
            "grad_max": final.grad_max,
        },
        "converged": bool(final.converged and all(r["converged"] for r in found.records)),
        "n_train": len(train[1]),
        "n_val": len(val[1]),
        "n_test": len(test[1]),
        "num_classes": dataset.num_classes,
        "dataset_info": dataset.info,  # source, counts found, skipped corrupt images
        "feature_dim": int(train[0].shape[1]),
        "feature": cfg.encoder.get("feature"),  # the probed kind (null: the encoder's only one)
        "normalize": normalize,
        "backend": solver.name,
        "device": device,
        "dtype": dtype,
        "weights": weights,  # {model, revision asked, commit loaded} for hub weights, else None
        "seconds": {
            "extract": round(extract_seconds, 3),
            "probe": round(time.perf_counter() - start, 3),
        },
        "features": {s: str(e.path) for s, e in entries.items()},
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    record["path"] = str(write_result(path, record))
    return record
