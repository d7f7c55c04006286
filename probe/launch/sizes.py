"""What one run of a grid will extract, cache and hold, from its composed config alone.

No dataset is built and no model loaded: the image counts are the dataset config's
`expected_sizes` (docs/protocol.md's dataset table), the width is the encoder config's
`width` times what each feature kind concatenates, and the probe stage's memory is
`probe.solvers.memory.estimate` on the protocol's split sizes. A dataset without
`expected_sizes` (npz, hf, imagefolder, digits) or an encoder without `width` has no
estimate; callers fall back to defaults and `dry_run=true` prints "?".

A token kind (`tokens`, `tokens.lN`) caches T x D float16 values an image, T the prefix
tokens and the patch grid (`resolution // patch_size` a side, or `encoder.token_pool`); an
encoder config without `patch_size` and `prefix_tokens` has no token estimate. Its probe
(`eval=attentive`) reads the cache in bounded chunks, so no linear-probe estimate is made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from omegaconf import DictConfig

from probe.core.tokens import STORE_BYTES, is_token_kind, stored_tokens
from probe.solvers.memory import MemoryEstimate, backend_of, estimate

# how many encoder widths each feature kind concatenates (probe/encoders/kinds.py); `projected`
# has the projection's width, at most the encoder's in the CLIP-like towers (L/14: 768 of 1024)
# `tokens` is one width a token (`row_bytes` counts its T tokens, in float16)
KIND_WIDTH = {"pooler_output": 1, "cls": 1, "mean": 1, "cls+mean": 2, "last4": 5, "projected": 1,
              "tokens": 1}  # fmt: skip
LAYER_SUFFIX = re.compile(r"\.l-?[0-9]+$")  # a layer kind (`cls+mean.l-2`) is as wide as its base
CACHE_DTYPE_BYTES = 4  # cached features are float32 whatever the compute dtype


def kind_width(kind: str) -> int:
    """How many encoder widths `kind` concatenates (1 for a kind this table does not know)."""
    return KIND_WIDTH.get(LAYER_SUFFIX.sub("", kind), 1)


def tokens_per_image(encoder: DictConfig, pool: int | None = None) -> int | None:
    """T of the token cache from the config (`pool` overrides `encoder.token_pool`), or None
    when it lacks `resolution`, `patch_size` or `prefix_tokens`."""
    res, patch, prefix = (encoder.get(k) for k in ("resolution", "patch_size", "prefix_tokens"))
    if res is None or patch is None or prefix is None:
        return None
    pool = encoder.get("token_pool") if pool is None else pool
    return stored_tokens(grid=int(res) // int(patch), prefix=int(prefix), pool=pool)


def row_bytes(encoder: DictConfig, kinds: list[str], pool: int | None = None) -> int | None:
    """Bytes one image fills in the cache over `kinds`: D float32 values a pooled kind, T x D
    float16 a token kind; None when the config does not say."""
    width = encoder.get("width")
    if width is None:
        return None
    total = 0
    for kind in kinds:
        if is_token_kind(kind):
            tokens = tokens_per_image(encoder, pool)
            if tokens is None:
                return None
            total += tokens * int(width) * STORE_BYTES
        else:
            total += int(width) * kind_width(kind) * CACHE_DTYPE_BYTES
    return total


@dataclass(frozen=True)
class RunSize:
    """One run's numbers (None where the configs do not say)."""

    images: int | None  # images the extraction encodes (every split it caches)
    cache_bytes: int | None  # the feature cache those images fill, every kind asked for
    probe: MemoryEstimate | None  # the probe stage's peak memory
    device: str = "cpu"  # where the estimate puts the probe's features


def split_sizes(dataset: DictConfig) -> tuple[int, int, int] | None:
    """(train, val, test) as the protocol fits them: the official val, or the carve."""
    sizes = dataset.get("expected_sizes")
    if not sizes or "train" not in sizes or "test" not in sizes:
        return None
    train, test = int(sizes["train"]), int(sizes["test"])
    val_cfg = dataset.get("val") or {}
    if "val" in sizes and val_cfg.get("source", "carve") in ("official", "auto"):
        return train, int(sizes["val"]), test
    if val_cfg.get("count") is not None:
        val = int(val_cfg["count"])
    else:
        val = round(train * float(val_cfg.get("fraction") or 0.2))
    return train - val, val, test


def _kinds(encoder: DictConfig) -> tuple[list[str], str]:
    """(every kind one extraction caches, the kind this run probes)."""
    probed = str(encoder.get("feature") or "pooler_output")
    cached = list(encoder.get("features") or [probed])
    return [str(k) for k in cached], probed


def probe_device(run: DictConfig, *, gpu: bool) -> str:
    """Where the probe's features live: on the GPU for the torch backend on a GPU task
    whose device is auto or cuda; cuML and scikit-learn hold theirs on the host."""
    device = str(run.get("device", "auto"))
    torch = backend_of(run.probe.get("_target_")) == "torch"
    return "cuda" if gpu and torch and (device == "auto" or "cuda" in device) else "cpu"


def run_size(run: DictConfig, *, gpu: bool = False) -> RunSize:
    sizes = split_sizes(run.dataset)
    width = run.encoder.get("width")
    expected = run.dataset.get("expected_sizes")
    images = sum(int(v) for v in expected.values()) if expected else None
    if width is None:
        return RunSize(images=images, cache_bytes=None, probe=None)
    cached, probed = _kinds(run.encoder)
    row = row_bytes(run.encoder, cached)
    cache = images * row if images is not None and row is not None else None
    if sizes is None or is_token_kind(probed):
        return RunSize(images=images, cache_bytes=cache, probe=None)
    device = probe_device(run, gpu=gpu)
    est = estimate(backend=backend_of(run.probe.get("_target_")), n_train=sizes[0], n_val=sizes[1],
                   n_test=sizes[2], dim=int(width) * kind_width(probed),
                   num_classes=int(run.dataset.num_classes), device=device,
                   chunk_mb=int(run.probe.get("chunk_mb", 1024)),
                   memory=int(run.probe.get("memory", 10)))  # fmt: skip
    return RunSize(images=images, cache_bytes=cache, probe=est, device=device)


def _gib(value: int | None) -> str:
    return "?" if value is None else f"{value / 2**30:.2f}"


def dry_run_lines(runs: list[tuple[str, DictConfig]], *, gpu: bool, mem: list[int]) -> list[str]:
    """One line per run (`runs`: (label, composed config); `mem`: each run's --mem in GB):
    images extracted, cache size, the probe's estimated peak host (and device) memory."""
    head = (f"{'images':>10} {'cache GiB':>9} {'probe host GiB':>14} {'device GiB':>10} "
            f"{'--mem':>6}  run")  # fmt: skip
    out = [head]
    for (label, cfg), gb in zip(runs, mem, strict=True):
        size = run_size(cfg, gpu=gpu)
        images = "?" if size.images is None else f"{size.images:,}"
        host = _gib(size.probe.host) if size.probe else "?"
        dev = _gib(size.probe.device) if size.probe and size.probe.device else "-"
        out.append(f"{images:>10} {_gib(size.cache_bytes):>9} {host:>14} {dev:>10} "
                   f"{str(gb) + 'G':>6}  {label}")  # fmt: skip
    return out


def token_space_lines(runs: list[DictConfig]) -> list[str]:
    """The dry run's verdict on the token caches of `runs`, per `cache_dir`: their bytes (each
    (encoder, dataset, kind, pool) counted once, entries already cached included) against the
    free space of its file system, and the `encoder.token_pool` that would fit
    (`probe.features.space.refuse_if_full`, the check a run makes before extracting)."""
    from probe.core.errors import ProbeError
    from probe.core.space import free_space, refuse_if_full, size_text

    by_dir: dict[str, dict[tuple, tuple[DictConfig, str]]] = {}
    for cfg in runs:
        for kind in _kinds(cfg.encoder)[0]:
            if is_token_kind(kind):
                key = (cfg.encoder.name, cfg.dataset.name, kind, cfg.encoder.get("token_pool"))
                by_dir.setdefault(str(cfg.cache_dir), {})[key] = (cfg, kind)
    lines = []
    for cache_dir, entries in by_dir.items():
        sized = [(cfg, kind, _images(cfg)) for cfg, kind in entries.values()]
        known = [(c, k, n) for c, k, n in sized if n is not None and row_bytes(c.encoder, [k])]
        grids = {int(c.encoder.resolution) // int(c.encoder.patch_size) for c, _, _ in known}
        pools = {c.encoder.get("token_pool") for c, _, _ in known}

        def need_at(pool: int | None, known=known) -> int:
            return sum(n * row_bytes(c.encoder, [k], pool) for c, k, n in known)

        current = pools.pop() if len(pools) == 1 else None
        more = len(sized) - len(known)
        unknown = f" ({more} more of unknown size)" if more else ""
        try:
            refuse_if_full(need_at, cache_dir=cache_dir, current=current,
                           grid=grids.pop() if len(grids) == 1 else None,
                           what=f"the token cache of these runs{unknown}")  # fmt: skip
        except ProbeError as err:
            lines.append(f"does not fit: {err}")
            continue
        free, where = free_space(cache_dir)
        lines.append(f"token cache: {size_text(need_at(current))}{unknown} under cache_dir="
                     f"{cache_dir} ({where}: {size_text(free)} free): fits")  # fmt: skip
    return lines


def _images(cfg: DictConfig) -> int | None:
    expected = cfg.dataset.get("expected_sizes")
    return sum(int(v) for v in expected.values()) if expected else None
