"""The pipeline of one `python -m probe` run: the feature stage, then the protocol, one result.

The only module that knows both files and the protocol: it takes the composed config, asks
`features` for cached arrays, hands them to `evaluations` and gives the outcome to `report`.
Nothing in a stage package imports it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from omegaconf import DictConfig, OmegaConf

from probe.api import evaluate, save
from probe.core import params
from probe.core.card import apply_card, card_fixing_feature, card_name
from probe.core.device import resolve_device
from probe.core.errors import ProbeError
from probe.core.factory import make
from probe.core.limits import device_limit, host_limit
from probe.core.names import check_run_names
from probe.datasets.base import DatasetFacts
from probe.encoders.base import compute_dtype
from probe.encoders.kinds import KindUnavailable
from probe.evaluations.attentive import check_settings
from probe.evaluations.cards import Rules
from probe.evaluations.metrics import refuse_score_metric
from probe.evaluations.multilabel import refuse_single_label
from probe.evaluations.normalize import check_normalize, normalize_rows
from probe.evaluations.outcome import Task, bootstrap_options
from probe.evaluations.search import clip_binary
from probe.evaluations.splits import protocol_splits
from probe.features.cache import CacheEntry
from probe.features.cached import probe_inputs
from probe.features.distributed import Context, setup, teardown
from probe.features.stage import build_dataset, cache_entries, ensure_features, pin_encoder
from probe.features.tokens import check_request, prefix_tokens
from probe.report.record import result_name, result_path
from probe.solvers import memory

log = logging.getLogger(__name__)
STAGES = ("all", "extract", "probe")
TOKEN_KINDS = "tokens"  # the token cache's feature kinds (N x T x D) start with it
NEEDS = {  # what an evaluation's `eval.input` needs of encoder.feature, and the fix
    "tokens": "token features (N x T x D): set encoder.feature=tokens (the token cache)",
    "pooled": "pooled features (N x D): use eval=attentive on tokens, or a pooled encoder.feature",
}
__all__ = ["build_dataset", "run", "probe_stage"]


def warn_sizes(dataset: DatasetFacts, sizes: dict[str, int]) -> None:
    for split, expected in (dataset.expected_sizes or {}).items():
        if split in sizes and sizes[split] != expected:
            log.warning(
                "%s: %s split has %d images; the protocol table says %d",
                dataset.name, split, sizes[split], expected,
            )  # fmt: skip


def run(cfg: DictConfig) -> dict[str, Any] | None:
    cfg = apply_card(cfg)  # the protocol card's encoder and solver keys, before anything else
    params.check(cfg)  # every count, switch and choice of the line, before anything is built
    check_run_names(cfg)  # before anything is written: names become folders (core/names.py)
    asked = {"metric": str(cfg.dataset.get("metric", "top1")), "dataset": str(cfg.dataset.name),
             "eval_name": str(cfg.eval.get("name", "linear"))}  # fmt: skip
    for refuse in (refuse_single_label, refuse_score_metric):  # before extraction
        refuse(**asked)
    check_request(cfg)  # the token cache: a model with tokens, a pool that divides the grid
    check_eval_input(cfg)  # token features for eval=attentive, pooled for the others
    normalize = check_normalize(cfg.probe.get("normalize"))
    device = resolve_device(cfg.device)
    dtype = compute_dtype(cfg.encoder, device)
    ctx, device = setup(device)
    try:
        cfg, weights = pin_encoder(cfg, ctx)  # encoder.revision: the commit it names now
        if cfg.stage == "probe" and not ctx.main:
            return None  # the probe runs on rank 0; nothing else to share
        inputs = probe_inputs(cfg, device=device) if cfg.stage == "probe" else None
        if inputs is not None:  # stage=probe: the cache alone, no images
            dataset, entries, dtype = inputs
            extract_seconds = 0.0
        else:  # the other ranks left already if stage=probe: rank 0 checks alone
            ranks = Context() if cfg.stage == "probe" else ctx
            dataset = build_dataset(cfg, ranks)
            entries = cache_entries(cfg, dataset.source_splits, dtype)
            try:
                extract_seconds = ensure_features(
                    cfg, dataset, entries, device=device, dtype=dtype, ctx=ranks
                )
            except KindUnavailable as err:  # the card's feature, or the user's own choice
                raise ProbeError(f"{card_fixing_feature(cfg)}{err}") from None
    finally:
        teardown(ctx)
    if cfg.stage == "extract" or not ctx.main:
        return None
    return probe_stage(cfg, dataset, entries, device=device, dtype=dtype, weights=weights,
                       extract_seconds=extract_seconds, normalize=normalize)  # fmt: skip


def check_eval_input(cfg: DictConfig) -> None:
    """An evaluation on token features (`eval.input: tokens`, eval=attentive) needs a token
    kind (`encoder.feature=tokens...`), and the others a pooled one: refused before any
    extraction. Your own features (`encoder=precomputed`) are checked by their shape;
    `stage=extract` fills any kind's cache, whatever `eval` says."""
    takes = str(cfg.eval.get("input", "pooled"))
    if cfg.get("stage", "all") == "extract":
        return
    check_settings(cfg.eval, width=cfg.encoder.get("width"))  # a trained head's own settings
    if cfg.encoder.get("user_features", False):
        return
    feature = str(cfg.encoder.get("feature") or "")
    if (takes == "tokens") != feature.startswith(TOKEN_KINDS):
        need = NEEDS.get(takes, NEEDS["pooled"])
        raise ProbeError(f"eval={cfg.eval.get('name', 'linear')} needs {need} (encoder="
                         f"{cfg.encoder.get('name')} gives feature={feature or None})")  # fmt: skip


def check_memory(
    cfg: DictConfig,
    *,
    n: tuple[int, int, int],
    dim: int,
    num_classes: int,
    device: str,
    points: int = memory.SEARCH_POINTS,
) -> None:
    """Log the linear protocol's estimated peak memory; refuse a run that cannot fit
    (`memory_check=false` skips the refusal)."""
    backend = memory.backend_of(cfg.probe.get("_target_"))
    est = memory.estimate(backend=backend, n_train=n[0], n_val=n[1], n_test=n[2], dim=dim,
                          num_classes=num_classes, device=device,
                          chunk_mb=int(cfg.probe.get("chunk_mb", 1024)),
                          memory=int(cfg.probe.get("memory", 10)),
                          search_points=points)  # fmt: skip
    host, dev = host_limit(), device_limit(device)
    log.info("probe memory estimate (%s): %s; available: host %s, device %s", backend,
             est.describe(), _limit_text(host), _limit_text(dev))  # fmt: skip
    if cfg.get("memory_check", True):
        memory.check(est, host=host, device=dev, backend=backend)


def linear_rules(cfg: DictConfig) -> Rules:
    """The card's val rule, search, refit and metric (the CLIP paper's without a card)."""
    node = (cfg.get("protocol") or {}).get("linear")
    if node is None:
        return Rules(splits=protocol_splits, search=clip_binary())
    return make(node)


def _features_from(cfg: DictConfig) -> str:
    """Whose feature and transform the result used: the card's or the encoder config's own,
    or the user's (`encoder=precomputed`: a card's encoder block never applies there)."""
    if cfg.encoder.get("user_features", False):
        return "user"
    return "card" if (cfg.get("protocol") or {}).get("encoder") else "encoder"


def _limit_text(limit: tuple[int, str] | None) -> str:
    return "unknown" if limit is None else f"{limit[0] / 2**30:.1f} GiB ({limit[1]})"


def probe_stage(
    cfg: DictConfig,
    dataset: DatasetFacts,
    entries: dict[str, CacheEntry],
    *,
    device: str,
    dtype: str,
    weights: dict | None,
    extract_seconds: float,
    normalize: str,
) -> dict[str, Any]:
    """The evaluation on the cached features, then its files: head (if any), then result."""
    start = time.perf_counter()
    feats = {s: e.load() for s, e in entries.items()}
    warn_sizes(dataset, {s: len(v[1]) for s, v in feats.items()})
    rules = linear_rules(cfg)
    train, val, test = rules.splits(dataset, feats)
    train, val, test = ((normalize_rows(X, normalize), y) for X, y in (train, val, test))
    if cfg.eval.get("name", "linear") == "linear":
        check_memory(cfg, n=(len(train[1]), len(val[1]), len(test[1])), dim=train[0].shape[1],
                     num_classes=dataset.num_classes, device=device,
                     points=rules.search.most_fits)  # fmt: skip
    task = Task(train=train, val=val, test=test, num_classes=dataset.num_classes,
                metric=rules.metric or dataset.metric, device=device,
                make_solver=lambda: make(cfg.probe, device=device),
                bootstrap=bootstrap_options(cfg.get("bootstrap")),
                strategy=rules.search, refit_on=rules.refit_on,
                prefix_tokens=prefix_tokens(entries["train"]))  # fmt: skip
    card = card_name(cfg)
    name = result_name(cfg.encoder, cfg.probe, protocol=card)
    record, outcome = evaluate(task, make(cfg.eval), name=cfg.eval.get("name", "linear"),
                               encoder=name, dataset=cfg.dataset.name, protocol=card)  # fmt: skip
    record.update({
        "protocol_features": _features_from(cfg),
        "dataset_info": dataset.info,  # source, counts found, skipped corrupt images
        "feature": cfg.encoder.get("feature"),  # the probed kind (null: the encoder's only one)
        "normalize": normalize,
        "dtype": dtype,
        "weights": weights,  # {model, revision asked, commit loaded} for hub weights, else None
        "seconds": {"extract": round(extract_seconds, 3),
                    "probe": round(time.perf_counter() - start, 3)},
        "features": {s: str(e.path) for s, e in entries.items()},
        # sample ids and labels of the test split: results that share it can be paired
        "test_content_hash": (entries["test"].meta() or {}).get("content_hash"),
        "config": OmegaConf.to_container(cfg, resolve=True),
    })  # fmt: skip
    return save(result_path(cfg.results_dir, name, cfg.dataset.name, outcome.eval), record, outcome)
