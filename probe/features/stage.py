"""The feature stage of a run: which source splits need extracting, and extracting them.

Works from the composed config, the dataset and its cache entries; the probe stage only ever
reads what this stage has finished (`CacheEntry.load`). `encoder.features=[a, b]` fills the
entries of every listed kind in one pass over the images; each kind's entry is fingerprinted
with `feature: KIND` alone, so it is the very entry a run with `encoder.feature=KIND` uses.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from probe.core.errors import ProbeError
from probe.core.factory import make
from probe.datasets import corrupt
from probe.datasets.base import ImageDataset
from probe.encoders.base import pin_weights
from probe.encoders.kinds import requested
from probe.features.batching import compile_encoder
from probe.features.cache import CacheEntry, entry_for, fingerprint, library_drift
from probe.features.distributed import Context, broadcast
from probe.features.extract import DEFAULT_SHARD_SIZE, extract_entries
from probe.features.loader import DEFAULT_PREFETCH_MB
from probe.features.space import check_token_space

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


def extract_kinds(cfg: DictConfig) -> tuple[str, ...]:
    """The feature kinds this run's extraction fills: `encoder.features`, else `encoder.feature`.

    An encoder config without `feature` (pixels, precomputed) has one unnamed output, ``""``.
    """
    feature, features = cfg.encoder.get("feature"), cfg.encoder.get("features")
    if feature is None:
        if features is not None:
            raise ProbeError(
                f"encoder={cfg.encoder.name} has one feature: encoder.features does not apply "
                "to it; remove it"
            )
        return ("",)
    return requested(str(feature), None if features is None else [str(f) for f in features])


def build_dataset(cfg: DictConfig, ctx: Context | None = None) -> ImageDataset:
    """The run's dataset, on every rank; with `dataset.skip_corrupt` the corrupt-image scan
    runs on rank 0 only and the other ranks take its outcome (`probe.datasets.corrupt`)."""
    ctx = ctx or Context()
    with corrupt.memo_under(cfg.cache_dir):  # the scan memo, unless $PROBE_SCAN_CACHE moves it
        return _build_dataset(cfg, ctx)


def _build_dataset(cfg: DictConfig, ctx: Context) -> ImageDataset:
    if not ctx.active or not cfg.dataset.get("skip_corrupt"):
        return make(cfg.dataset)
    shared: dict[str, Any] = {}
    if ctx.main:
        try:
            with corrupt.recorded() as outcomes:
                dataset = make(cfg.dataset)
            shared = {"outcomes": dict(outcomes)}
        except Exception as err:  # noqa: BLE001 - told to the other ranks, then re-raised
            broadcast({"error": str(err)}, ctx)
            raise
    shared = broadcast(shared, ctx)
    if "error" in shared:
        raise ProbeError(f"dataset {cfg.dataset.name}: rank 0 failed: {shared['error']}")
    if ctx.main:
        return dataset
    with corrupt.answered(shared["outcomes"]):
        return make(cfg.dataset)


def cache_entries(
    cfg: DictConfig, splits: Iterable[str], dtype: str, *, kind: str | None = None
) -> dict[str, CacheEntry]:
    """Split -> the entry of one feature kind (default: `encoder.feature`, the probed one)."""
    enc, ds = plain(cfg.encoder), plain(cfg.dataset)
    enc.pop("features", None)
    if kind:
        enc["feature"] = kind
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
        for split in splits
    }


def extract_options(cfg: DictConfig) -> dict[str, Any]:
    """The `extract:` node (shard size, lock timeout, verification, prefetch budget), with
    defaults."""
    opts = {"shard_size": DEFAULT_SHARD_SIZE, "lock_timeout": 3600, "verify": True,
            "prefetch_mb": DEFAULT_PREFETCH_MB}  # fmt: skip
    opts.update(plain(cfg.get("extract") or {}))
    budget = opts["prefetch_mb"]
    if isinstance(budget, bool) or not isinstance(budget, int | float) or budget <= 0:
        raise ProbeError(
            f"extract.prefetch_mb={budget!r} must be a positive number of MB (the bytes of "
            f"decoded batches loaded ahead), e.g. {DEFAULT_PREFETCH_MB}"
        )
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


def needs_extraction(cfg: DictConfig, entries: dict[str, CacheEntry], bad: dict) -> str:
    """stage=probe's error: which entries are unusable and why, and the command that fills them."""
    missing = ", ".join(f"{s} ({entries[s].path}: {'; '.join(p)})" for s, p in bad.items())
    feature = cfg.encoder.get("feature")
    kind = f" encoder.feature={feature}" if feature not in (None, "pooler_output") else ""
    return (
        f"stage=probe needs cached features, but these splits have none usable: {missing}. "
        f"Run `python -m probe stage=extract encoder={cfg.encoder.name}{kind} "
        f"dataset={cfg.dataset.name}` first (or stage=all)."
    )


def _missing(cfg, dataset, entries, *, verify: bool) -> dict[str, Any]:
    """stage=probe: the probed kind's entries must all be usable (nothing is extracted)."""
    bad = _unusable(dataset, entries, verify=verify)
    if not bad:
        warn_drift(entries)
        return {"todo": {}}
    return {"error": needs_extraction(cfg, entries, bad)}


def _todo(dataset, by_kind, *, verify: bool) -> dict[str, Any]:
    """Split -> the kinds whose entry is missing, stale or damaged."""
    todo: dict[str, list[str]] = {}
    for kind, entries in by_kind.items():
        bad = _unusable(dataset, entries, verify=verify)
        for s, problems in bad.items():
            if entries[s].meta_path.exists():
                log.warning("%s: cache entry %s rebuilt: %s", s, entries[s].path,
                            "; ".join(problems))  # fmt: skip
            todo.setdefault(s, []).append(kind)
        good = {s: e for s, e in entries.items() if s not in bad}
        warn_drift(good)
        _adopt(good, dataset.about())
    return {"todo": todo}


def _adopt(entries: dict[str, CacheEntry], about: dict[str, Any]) -> None:
    """Entries extracted before meta.json carried the dataset's facts get them now (checked
    against the images just now), so a later `stage=probe` needs no images."""
    for entry in entries.values():
        if "dataset" not in (entry.meta() or {"dataset": None}):
            try:
                entry.update_meta({"dataset": about})
            except ProbeError as err:  # a read-only cache: stage=probe then builds the dataset
                log.warning("could not add the dataset's facts to %s: %s", entry.meta_path, err)


def warn_drift(entries: dict[str, CacheEntry]) -> None:
    """Reused entries extracted with other Pillow/torch/torchvision/transformers versions."""
    for s, entry in entries.items():
        drift = library_drift(entry.meta() or {})
        if drift:
            log.warning(
                "%s: reusing %s, extracted with other library versions (%s); its features may "
                "differ slightly from a fresh extraction (delete the entry to re-extract)",
                s, entry.path, "; ".join(drift),
            )  # fmt: skip


def entries_by_kind(
    cfg: DictConfig, dataset: ImageDataset, dtype: str, entries: dict[str, CacheEntry]
) -> dict[str, dict[str, CacheEntry]]:
    """Kind -> split -> entry for every kind the extraction fills (`entries`: the probed one's)."""
    feature = cfg.encoder.get("feature")
    kinds = extract_kinds(cfg)
    if cfg.stage != "extract" and feature is not None and feature not in kinds:
        raise ProbeError(
            f"encoder.feature={feature} is not among encoder.features={list(kinds)}: this run "
            "probes encoder.feature; add it to encoder.features or set encoder.feature to one "
            "of them"
        )
    return {k: entries if k in ("", feature)
            else cache_entries(cfg, dataset.source_splits, dtype, kind=k)
            for k in kinds}  # fmt: skip


def ensure_features(
    cfg: DictConfig,
    dataset: ImageDataset,
    entries: dict[str, CacheEntry],
    *,
    device: str,
    dtype: str,
    ctx: Context | None = None,
) -> float:
    """Extract every entry that is missing, stale or damaged; returns seconds spent.

    `entries` are the probed kind's; with `encoder.features` the other listed kinds' entries
    are filled in the same pass. Under torchrun rank 0 checks the cache and every rank
    extracts its share of each split.
    """
    ctx = ctx or Context()
    opts = extract_options(cfg)
    verify = bool(opts["verify"])
    by_kind = {} if cfg.stage == "probe" else entries_by_kind(cfg, dataset, dtype, entries)
    plan = None
    if ctx.main:
        plan = (_missing(cfg, dataset, entries, verify=verify) if cfg.stage == "probe"
                else _todo(dataset, by_kind, verify=verify))  # fmt: skip
    plan = broadcast(plan, ctx)
    if "error" in plan:
        raise ProbeError(plan["error"])
    if not plan["todo"]:
        log.info("features cached for all splits: nothing to extract")
        return 0.0
    start = time.perf_counter()
    kinds = [k for k in by_kind if any(k in ks for ks in plan["todo"].values())]
    extra = {"features": kinds} if kinds != [""] else {}
    encoder = make(cfg.encoder, device=device, dtype=dtype, **extra)
    if cfg.get("compile") or cfg.encoder.get("compile"):
        encoder = compile_encoder(encoder)
    if len(kinds) > 1:
        log.info("one pass over the images fills the entries of %s", ", ".join(kinds))
    to_fill = {s: {k: by_kind[k][s] for k in ks} for s, ks in plan["todo"].items()}
    check_token_space(cfg, dataset, encoder, to_fill, ctx=ctx)  # before any row of a token kind
    for split, todo in plan["todo"].items():
        extract_entries(
            encoder=encoder,
            split=dataset.splits[split],
            entries={k: by_kind[k][split] for k in todo},
            batch_size=int(cfg.batch_size),
            num_workers=cfg.num_workers,
            desc=f"{cfg.encoder.name}/{cfg.dataset.name}/{split}",
            shard_size=int(opts["shard_size"]),
            ctx=ctx,
            lock_timeout=opts["lock_timeout"],
            prefetch_mb=opts["prefetch_mb"],
            about=dataset.about(),
        )
    return time.perf_counter() - start
