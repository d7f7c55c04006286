"""What every encoder family returns."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from probe.core.device import auto_dtype
from probe.core.errors import ProbeError
from probe.encoders.tokens import pool_tokens

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str, device: str) -> str:
    """`auto` means bf16 autocast on CUDA and plain fp32 elsewhere (the protocol's default)."""
    if dtype == "auto":
        return auto_dtype(device)
    if dtype not in DTYPES:
        raise ProbeError(f"encoder.dtype={dtype!r} is not valid; use auto or one of {list(DTYPES)}")
    return dtype


def compute_dtype(encoder: Mapping[str, Any], device: str) -> str:
    """The dtype an encoder config's features are really computed in.

    A family whose module sets `COMPUTE_DTYPE` (raw pixels, precomputed rows: no model, so no
    autocast) always computes in that dtype, whatever `encoder.dtype` or the device say; the
    fingerprint and the result record what happened, not what was asked.
    """
    asked = str(encoder.get("dtype", "auto"))
    fixed = getattr(_family(encoder), "COMPUTE_DTYPE", None)
    if fixed is None:
        return resolve_dtype(asked, device)
    if asked not in ("auto", fixed):
        log.warning(
            "encoder %s computes in %s whatever encoder.dtype says; encoder.dtype=%s is ignored",
            encoder.get("name"), fixed, asked,
        )  # fmt: skip
    return fixed


def pin_weights(encoder: Mapping[str, Any]) -> dict[str, str] | None:
    """`{model, revision, commit}`: the hub commit a config's weights come from, or None.

    A family that loads hub weights has `weights_commit(model, revision)` (the hf and
    open_clip families); model-free families and local directories have no commit.
    """
    resolve = getattr(_family(encoder), "weights_commit", None)
    if resolve is None or not encoder.get("model"):
        return None
    model, revision = str(encoder["model"]), str(encoder.get("revision") or "main")
    if model == "???":  # OmegaConf's mark of a mandatory value left unset
        raise ProbeError(
            f"encoder.model is not set for encoder {encoder.get('name')}; give a hub id or a "
            "local directory, e.g. encoder.model=openai/clip-vit-base-patch32"
        )
    commit = resolve(model, revision)
    return None if commit is None else {"model": model, "revision": revision, "commit": commit}


def has_tokens(encoder: Mapping[str, Any]) -> bool:
    """Whether an encoder config's family can have a token sequence at all: a family module
    that sets `TOKENS = False` (raw pixels, precomputed rows) never has; the model families
    say per model when it is built (a CNN has none)."""
    return bool(getattr(_family(encoder), "TOKENS", True))


def _family(encoder: Mapping[str, Any]) -> Any:
    """The module of the config's `_target_` builder (None if it cannot be imported here:
    building the encoder then reports the problem)."""
    module = str(encoder.get("_target_") or "").rpartition(".")[0]
    try:
        return importlib.import_module(module) if module else None
    except ImportError:
        return None


@dataclass
class Encoder:
    """A frozen feature extractor.

    `transform` maps one loaded sample (PIL image or vector) to a tensor and must be picklable;
    `forward` maps a batch on `device` to (B, D) features, or to a dict of them by feature
    kind when the family computes several kinds in one pass (`kinds` names them, in the order
    `embed` concatenates them). `embed` wraps it with inference mode and autocast so families
    only write the model call. `feature_dim` is the backbone's width. `block`, for families
    whose samples already are features, turns a block of samples (`Split.block`) into float32
    features at once; it must give what `embed` gives on the same rows, bit for bit.
    The token kinds (`tokens`, `tokens.lN`) come out of `forward` as (B, T, D): `prefix_tokens`
    of them lead each row (class, registers), and `token_pool` (`encoder.token_pool`) is the
    G x G grid `embed_kinds` average-pools the patch tokens to (`probe/encoders/tokens.py`).
    """

    transform: Callable[[Any], torch.Tensor]
    forward: Callable[[torch.Tensor], torch.Tensor | dict[str, torch.Tensor]]
    device: str = "cpu"
    dtype: str = "float32"
    feature_dim: int | None = None
    kinds: tuple[str, ...] = ()
    block: Callable[[Any], Any] | None = None
    prefix_tokens: int = 0
    token_pool: int | None = None

    def _run(self, batch: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        batch = batch.to(self.device, non_blocking=True)
        use_autocast = self.dtype != "float32"
        device_type = "cuda" if str(self.device).startswith("cuda") else "cpu"
        with torch.autocast(device_type, dtype=DTYPES[self.dtype], enabled=use_autocast):
            return self.forward(batch)

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, sum of the kinds' widths) float32: every kind, concatenated in `kinds` order (a
        token kind flattened to T x D values a row, as the cache's rows are laid out)."""
        parts = [v.flatten(1) for v in self.embed_kinds(batch).values()]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    @torch.inference_mode()
    def embed_kinds(self, batch: torch.Tensor, *, pool: bool = True) -> dict[str, torch.Tensor]:
        """Kind -> (B, D_kind) float32, (B, T, D) for a token kind, its patch grid pooled to
        `token_pool` (unless `pool` is false); an encoder with one unnamed output gives it as
        ``""``."""
        out = self._run(batch)
        if isinstance(out, dict):
            feats = {k: out[k].float() for k in (self.kinds or out)}
        else:
            feats = {self.kinds[0] if self.kinds else "": out.float()}
        if not pool:
            return feats
        return {k: self._pooled(v) for k, v in feats.items()}

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3:
            return x
        return pool_tokens(x, prefix=self.prefix_tokens, pool=self.token_pool,
                           model="the encoder")  # fmt: skip
