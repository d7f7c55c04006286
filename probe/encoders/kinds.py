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

The final norm is the norm the model applies last to its tokens, applied to every token, before
any token is picked or averaged. Where the model's only final norm comes after pooling (timm's
`fc_norm` models, open_clip's `final_ln_after_pool`), that norm is applied to every token, as
open_clip's own `forward_intermediates(normalize_intermediates=True)` does. Where a model has
no final norm at all (timm `final_norm=False`), the tokens are the last block's. Each family's
docstring says which module that is and cites the library source it was read from.

A family's forward fills a `Tokens` once per batch with what the requested kinds need and
`select` cuts every kind from it, so `encoder.features=[a, b]` costs one backbone pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from probe.core.errors import ProbeError

KINDS = ("pooler_output", "cls", "mean", "cls+mean", "last4")
DEFAULT = "pooler_output"
NEED_CLS = frozenset({"cls", "cls+mean", "last4"})
NEED_TOKENS = frozenset({"cls", "mean", "cls+mean", "last4"})
NEED_FINAL = frozenset({"cls", "mean", "cls+mean"})  # the kinds read from the final tokens
LAST_BLOCKS = 4
# Each kind's definition, by number; it is in the feature cache's fingerprint
# (probe/features/cache.py), so an entry extracted under an older definition is never reused.
# 2 (issue 23): the token kinds are read after the model's final norm in every family; under 1,
# hf CLIP/MLCD and open_clip gave `cls`/`mean` before it and timm's fc_norm models gave every
# token kind without it. `pooler_output` never changed: it has no number, so its entries keep
# their fingerprint.
DEFINITIONS = {"cls": 2, "mean": 2, "cls+mean": 2, "last4": 2}


def requested(feature: str, features: Sequence[str] | None) -> tuple[str, ...]:
    """The kinds one pass computes: `features` when given (order kept, repeats dropped)."""
    kinds = (feature,) if features is None else tuple(dict.fromkeys(features))
    if not kinds:
        raise ProbeError("encoder.features=[] lists no kind; give at least one or set it to null")
    for kind in kinds:
        if kind not in KINDS:
            where = (
                f"encoder.feature={kind!r}"
                if features is None
                else (f"encoder.features={list(kinds)}: {kind!r}")
            )
            raise ProbeError(f"{where} unknown; allowed kinds: {', '.join(KINDS)}")
    return kinds


class KindUnavailable(ProbeError):
    """The model cannot give a requested kind (a protocol card that fixed it names itself)."""


def check_available(kinds: Sequence[str], available: Sequence[str], *, model: str) -> None:
    """A kind the model cannot give is a one-line error naming the kinds it can."""
    missing = [k for k in kinds if k not in available]
    if missing:
        raise KindUnavailable(
            f"encoder.feature={missing[0]} is not available for {model}; it can give: "
            f"{', '.join(available)}"
        )


def available(*, has_tokens: bool, has_cls: bool, has_blocks: bool) -> tuple[str, ...]:
    """The kinds of a model with (or without) a token sequence, a class token, block outputs."""
    out = [DEFAULT]
    if has_tokens:
        out += ["cls", "mean", "cls+mean"] if has_cls else ["mean"]
        if has_cls and has_blocks:
            out.append("last4")
    return tuple(out)


@dataclass
class Tokens:
    """One batch's outputs, as the kinds read them.

    `final` is the token sequence `cls` and `mean` take, after the model's final norm (the
    family applies the norm where the library's own output precedes it); `prefix` counts its
    leading non-patch tokens; `blocks` are the last four blocks' outputs after the same norm
    (filled only when `last4` is asked for).
    """

    pooled: torch.Tensor | None = None
    final: torch.Tensor | None = None
    prefix: int = 1
    blocks: list[torch.Tensor] = field(default_factory=list)


def select(kinds: Sequence[str], tokens: Tokens) -> dict[str, torch.Tensor]:
    """Every requested kind, as a (B, D_kind) tensor, in the order asked."""
    out: dict[str, torch.Tensor] = {}
    for kind in kinds:
        if kind == "pooler_output":
            out[kind] = tokens.pooled
        elif kind == "cls":
            out[kind] = tokens.final[:, 0]
        elif kind == "mean":
            out[kind] = tokens.final[:, tokens.prefix :].mean(dim=1)
        elif kind == "cls+mean":
            final = tokens.final
            out[kind] = torch.cat([final[:, 0], final[:, tokens.prefix :].mean(dim=1)], dim=1)
        else:
            out[kind] = last4(tokens.blocks, prefix=tokens.prefix)
    return out


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
