"""The feature stage of a run: which source splits need extracting, and extracting them.

Works from the composed config, the dataset and its cache entries; the probe stage only ever
reads what this stage has finished (`CacheEntry.load`).
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from probe.core.errors import ProbeError
from probe.core.factory import make
from probe.datasets.base import ImageDataset
from probe.encoders.base import pin_weights
from probe.features.batching import compile_encoder
from probe.features.cache import CacheEntry, entry_for, fingerprint, library_drift
from probe.features.distributed import Context, broadcast
from probe.features.extract import DEFAULT_SHARD_SIZE, extract_split

log = logging.getLogger(__name__)


def plain(cfg: Any) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def pin_encoder(cfg: DictConfig, ctx: Context | None = None) -> tuple[DictConfig, dict | None]:
    """`cfg` with `encoder.revision` set to the hub commit it names now, and the record of it.

    The fingerprint, the model load and the result then all name one commit: a model
    re-uploaded under the same branch is re-extracted, and a result says which weights it
    used. Rank 0 asks the hub (or its local cache) once; every rank uses its answer.
    """
    ctx = ctx or Context()
    answer: dict[str, Any] = {}
    if ctx.main:
        try:
            answer = {"weights": pin_weights(plain(cfg.encoder))}
        except ProbeError as err:
            answer = {"error": str(err)}
    answer = broadcast(answer, ctx)
    if "error" in answer:
        raise ProbeError(answer["error"])
    weights = answer["weights"]
    if weights is None:
        return cfg, None
    pinned = copy.deepcopy(cfg)
    with open_dict(pinned):
        pinned.encoder.revision = weights["commit"]
    if weights["revision"] != weights["commit"]:
        log.info("%s: revision %s is commit %s", weights["model"], weights["revision"],
                 weights["commit"])  # fmt: skip
    return pinned, weights


def cache_entries(cfg: DictConfig, dataset: ImageDataset, dtype: str) -> dict[str, CacheEntry]:
    enc, ds = plain(cfg.encoder), plain(cfg.dataset)
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
    opts.update(plain(cfg.get("extract") or {}))
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
    for s in (s for s in entries if s not in bad):
        drift = library_drift(entries[s].meta() or {})
        if drift:
            log.warning(
                "%s: reusing %s, extracted with other library versions (%s); its features may "
                "differ slightly from a fresh extraction (delete the entry to re-extract)",
                s, entries[s].path, "; ".join(drift),
            )  # fmt: skip
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
