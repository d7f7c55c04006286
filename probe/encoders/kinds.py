"""Feature kinds: which vector of a ViT-like encoder is probed, several from one forward pass.

One tag, one tensor: the token kinds mean the same thing in every family, the tokens after the
model's final norm, as dinov2 defines them (facebookresearch/dinov2
`dinov2/models/vision_transformer.py`: `forward_features` returns `x_norm_clstoken` and
`x_norm_patchtokens`, the class and patch tokens of `self.norm(x)`, and
`get_intermediate_layers(norm=True)` applies `self.norm` to each block output). So the same
weights give the same `@cls` through hf, open_clip and timm (`tests/test_one_tag.py`).

    pooler_output  the family's default pre-logits feature (hf: `pooler_output`; open_clip: the
                   pooled output with the projection removed; timm: `forward_head(pre_logits=True)`)
    cls            the class token after the final norm
    mean           the mean of the patch tokens after the final norm (prefix tokens: class and
                   registers excluded; every token of a model without a class token)
    cls+mean       cls and mean concatenated
    last4          dinov2's linear-eval feature: the class tokens of the last four blocks and the
                   mean patch token of the last block, each after the final norm, concatenated
                   (facebookresearch/dinov2 `eval/linear.py` `create_linear_input` with
                   `use_n_blocks=4, use_avgpool=True` on `get_intermediate_layers(x, 4,
                   return_class_token=True, norm=True)`)
    projected      the image embedding after the model's projection head, unnormalised (what
                   zero-shot and CLIP_benchmark use: hf `CLIPModel.get_image_features`, open_clip
                   `encode_image(normalize=False)`; SigLIP has no separate projection, its
                   embedding is the attention-pool output); only models with such a head
    cls.lN, mean.lN, cls+mean.lN
                   `cls`, `mean` or `cls+mean` of block N's output (N counts from 0; -1 is the
                   last block, -2 the one before), after the same final norm, as dinov2's
                   `get_intermediate_layers(norm=True)`; `cls.l-1` is `cls`
    tokens, tokens.lN
                   every token (prefix tokens first, then the patches) of the last block, or of
                   block N, after the same final norm: T x D a row, cached as float16 and
                   optionally pooled (`probe/encoders/tokens.py`), for `eval=attentive`

The final norm is the norm the model applies last to its tokens, applied to every token, before
any token is picked or averaged. Where the model's only final norm comes after pooling (timm's
`fc_norm` models, open_clip's `final_ln_after_pool`), that norm is applied to every token, as
open_clip's own `forward_intermediates(normalize_intermediates=True)` does. Where a model has
no final norm at all (timm `final_norm=False`), the tokens are the last block's. Each family's
docstring says which module that is and cites the library source it was read from.

A family's forward fills a `Tokens` once per batch with what the requested kinds need (the
normed outputs of the blocks `blocks_needed` names, for `last4` and the layer kinds) and
`select` cuts every kind from it, so `encoder.features=[a, b]` costs one backbone pass.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from probe.core.errors import ProbeError
from probe.encoders.tokens import TOKENS

PROJECTED = "projected"
KINDS = ("pooler_output", "cls", "mean", "cls+mean", "last4", PROJECTED, TOKENS)
DEFAULT = "pooler_output"
NEED_FINAL = frozenset({"cls", "mean", "cls+mean", TOKENS})  # read from the final tokens
LAST_BLOCKS = 4
# The layer kinds: `{base}.l{N}`, N a block counted from 0, or negative from the end. One
# spelling per number (no `+3`, `03` or `-0`), so one name is one cache entry and one result tag;
# `.`, `+` and `-` are safe in a folder name (probe/core/names.py) and `@` stays the tag separator.
LAYER_BASES = ("cls", "mean", "cls+mean")
LAYER = re.compile(r"(cls|mean|cls\+mean|tokens)\.l(0|-?[1-9][0-9]*)")
LAYER_FORMS = tuple(f"{base}.lN" for base in (*LAYER_BASES, TOKENS))
# Each kind's definition, by number; it is in the feature cache's fingerprint
# (probe/features/cache.py), so an entry extracted under an older definition is never reused.
# 2 (issue 23): the token kinds are read after the model's final norm in every family; under 1,
# hf CLIP/MLCD and open_clip gave `cls`/`mean` before it and timm's fc_norm models gave every
# token kind without it. `pooler_output` never changed: it has no number, so its entries keep
# their fingerprint. A layer kind counts with its base's number (`definition`); `projected` and
# the token cache's `tokens` are new and have none.
DEFINITIONS = {"cls": 2, "mean": 2, "cls+mean": 2, "last4": 2}
# Who has a projection head (`projected`), for the error that refuses it elsewhere.
PROJECTION_HINT = (
    "the models with one: hf two-tower CLIP checkpoints (model_type clip, e.g. encoder=clip_l14 "
    "or clip_b16), hf SigLIP (its attention-pool output, e.g. siglip_so400m, siglip2_so400m) "
    "and open_clip ViTs with a projection (e.g. dfn5b_h14, openclip_bigg14)"
)
ALLOWED = f"{', '.join(KINDS)}, or {', '.join(LAYER_FORMS)} of block N (from 0; -1 the last)"
NO_TOKENS = (
    "which has no token sequence (a CNN, or a tower whose final norm is not placed); the token "
    "cache needs a ViT, e.g. encoder=dinov2_l14 or encoder=clip_l14"
)


def layer_of(kind: str) -> tuple[str, int] | None:
    """(`cls`, -2) for `cls.l-2`; None for a kind that names no block."""
    found = LAYER.fullmatch(kind)
    return None if found is None else (found.group(1), int(found.group(2)))


def form(kind: str) -> str:
    """The kind as `available` lists it: a layer kind as `{base}.lN`."""
    layer = layer_of(kind)
    return kind if layer is None else f"{layer[0]}.lN"


def definition(kind: str) -> int | None:
    """The definition number the cache fingerprint counts (`DEFINITIONS`; a layer kind's base)."""
    layer = layer_of(kind)
    return DEFINITIONS.get(kind if layer is None else layer[0])


def requested(feature: str, features: Sequence[str] | None) -> tuple[str, ...]:
    """The kinds one pass computes: `features` when given (order kept, repeats dropped)."""
    kinds = (feature,) if features is None else tuple(dict.fromkeys(features))
    if not kinds:
        raise ProbeError("encoder.features=[] lists no kind; give at least one or set it to null")
    for kind in kinds:
        if kind not in KINDS and layer_of(kind) is None:
            where = (
                f"encoder.feature={kind!r}"
                if features is None
                else (f"encoder.features={list(kinds)}: {kind!r}")
            )
            raise ProbeError(f"{where} unknown; allowed kinds: {ALLOWED}")
    return kinds


class KindUnavailable(ProbeError):
    """The model cannot give a requested kind (a protocol card that fixed it names itself)."""


def check_available(kinds: Sequence[str], available: Sequence[str], *, model: str) -> None:
    """A kind the model cannot give is a one-line error naming the kinds it can (`projected`:
    naming the models that have a projection head)."""
    missing = [k for k in kinds if form(k) not in available]
    if missing and form(missing[0]) in (TOKENS, f"{TOKENS}.lN") and TOKENS not in available:
        raise KindUnavailable(
            f"encoder.feature={missing[0]} (every token, the token cache) is not available for "
            f"{model}, {NO_TOKENS}"
        )
    if missing and missing[0] == PROJECTED:
        raise KindUnavailable(
            f"encoder.feature={PROJECTED} (the image embedding after a projection head) is not "
            f"available for {model}, which has no projection head; {PROJECTION_HINT}"
        )
    if missing:
        raise KindUnavailable(
            f"encoder.feature={missing[0]} is not available for {model}; it can give: "
            f"{', '.join(available)}"
        )


def available(
    *, has_tokens: bool, has_cls: bool, depth: int, projected: bool = False
) -> tuple[str, ...]:
    """The kinds of a model with (or without) a token sequence, a class token, `depth` blocks
    whose outputs the family can read (0: none) and a projection head."""
    out = [DEFAULT] + ([PROJECTED] if projected else [])
    if has_tokens:
        bases = LAYER_BASES if has_cls else ("mean",)
        out += [*bases, TOKENS]
        if has_cls and depth >= LAST_BLOCKS:
            out.append("last4")
        if depth >= 1:
            out += [f"{base}.lN" for base in (*bases, TOKENS)]
    return tuple(out)


def check_layers(kinds: Sequence[str], depth: int | None, *, model: str) -> None:
    """A block the model does not have is a one-line error naming the blocks it has (`depth`
    None: not known yet, nothing to check)."""
    for kind in kinds:
        layer = layer_of(kind)
        if depth is not None and layer is not None and not -depth <= layer[1] < depth:
            raise ProbeError(
                f"encoder.feature={kind}: {model} has {depth} blocks, so N in {layer[0]}.lN is "
                f"0..{depth - 1} (or -{depth}..-1 from the end); e.g. {layer[0]}.l{depth - 1}"
            )


def blocks_needed(kinds: Sequence[str], depth: int) -> list[int]:
    """The blocks (from 0, ascending) whose normed outputs the kinds read: the last four for
    `last4`, block N for a layer kind."""
    need: set[int] = set()
    for kind in kinds:
        layer = layer_of(kind)
        if kind == "last4":
            need.update(range(depth - LAST_BLOCKS, depth))
        elif layer is not None:
            need.add(layer[1] % depth)  # checked in range by `check_layers`
    return sorted(need)


@dataclass
class Tokens:
    """One batch's outputs, as the kinds read them.

    `final` is the token sequence `cls` and `mean` take, after the model's final norm (the
    family applies the norm where the library's own output precedes it); `prefix` counts its
    leading non-patch tokens; `blocks` maps a block (from 0) of the model's `depth` to its
    output after the same norm (filled for `blocks_needed` only); `projected` is the image
    embedding after the projection head.
    """

    pooled: torch.Tensor | None = None
    final: torch.Tensor | None = None
    prefix: int = 1
    blocks: dict[int, torch.Tensor] = field(default_factory=dict)
    depth: int = 0
    projected: torch.Tensor | None = None


def select(kinds: Sequence[str], tokens: Tokens) -> dict[str, torch.Tensor]:
    """Every requested kind, as a (B, D_kind) tensor ((B, T, D) for the token kinds), in the
    order asked."""
    out: dict[str, torch.Tensor] = {}
    for kind in kinds:
        layer = layer_of(kind)
        if kind == "pooler_output":
            out[kind] = tokens.pooled
        elif kind == PROJECTED:
            out[kind] = tokens.projected
        elif kind == "last4":
            last = range(tokens.depth - LAST_BLOCKS, tokens.depth)
            out[kind] = last4([tokens.blocks[i] for i in last], prefix=tokens.prefix)
        elif layer is not None:
            block = tokens.blocks[layer[1] % tokens.depth]
            out[kind] = cut(layer[0], block, prefix=tokens.prefix)
        else:
            out[kind] = cut(kind, tokens.final, prefix=tokens.prefix)
    return out


def cut(base: str, tokens: torch.Tensor, *, prefix: int) -> torch.Tensor:
    """`cls`, `mean` or `cls+mean` of one normed token sequence (B, 1 + ..., D); `tokens`: the
    whole sequence (B, T, D), pooled later by `Encoder.embed_kinds`."""
    if base == TOKENS:
        return tokens
    if base == "cls":
        return tokens[:, 0]
    mean = tokens[:, prefix:].mean(dim=1)
    return mean if base == "mean" else torch.cat([tokens[:, 0], mean], dim=1)


def last4(blocks: Sequence[torch.Tensor], *, prefix: int) -> torch.Tensor:
    """dinov2's `create_linear_input(..., use_n_blocks=4, use_avgpool=True)` on normed blocks."""
    if len(blocks) != LAST_BLOCKS:
        raise RuntimeError(f"last4 needs the last {LAST_BLOCKS} blocks, got {len(blocks)}")
    classes = [b[:, 0] for b in blocks]
    return torch.cat([*classes, blocks[-1][:, prefix:].mean(dim=1)], dim=1)


def check_width(width: int | None, found: int | None, *, model: str) -> None:
    """The encoder config's `width` against the loaded model's (a wrong checkpoint fails early)."""
    if width is None or found is None or int(width) == int(found):
        return
    raise ProbeError(
        f"encoder.model={model!r} has width {found}, but this encoder config expects "
        f"encoder.width={width}; check encoder.model, or set encoder.width={found} (or null)"
    )
