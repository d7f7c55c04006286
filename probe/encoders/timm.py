"""timm models (EVA, SigLIP, DINOv2, ConvNeXt, CLIP ports and the rest of the zoo); an extra.

`encoder=timm encoder.model=ARCH[.TAG] [encoder.checkpoint=FILE]` builds the model with
`timm.create_model`: weights from the hub (`pretrained=True`), or from a local file through
`pretrained_cfg_overlay=dict(file=FILE)`, which keeps the model's own pretrained_cfg (so its
preprocessing) and runs timm's checkpoint filter and strict load as for hub weights. The
preprocessing is the model's: timm's data config (`resolve_data_config`: input size, crop_pct,
crop mode, interpolation, mean, std) as a `preprocess` block. The default feature is
`forward_head(pre_logits=True)` (pooled and fc-normed, head removed); the token kinds read
`forward_features` (`forward_intermediates(norm=True, indices=[...])` for `last4` and the layer
kinds, `cls.l-2` and the like) in the same single pass. There is no `projected`: a timm head is
a classifier or a CLIP projection and nothing in the model says which.

The token kinds are after the model's final norm (`probe/encoders/kinds.py`). In timm 1.0.31
(`timm/models/vision_transformer.py`) a ViT has one of two final norms: `norm`, over every
token at the end of `forward_features` (line 1302) and of each intermediate with `norm=True`
(line 1182), or, with `fc_norm` (default for avg-pooled models, line 839), `fc_norm` after
pooling in `forward_head` (lines 1339-1340) while `norm` is an Identity (lines 918, 941); Eva
(`eva.py` lines 715-722, 835, 848), BEiT and the relpos ViT place them the same way. For an
fc_norm model the family applies `fc_norm` to every token and block output (`token_norm`), as
open_clip does with `ln_post` for its `final_ln_after_pool` towers; a model with neither
(`final_norm=False`) gives the last block's tokens.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import torch

from probe.core.errors import ProbeError
from probe.encoders import kinds as K
from probe.encoders.base import Encoder
from probe.encoders.preprocess import build_transform, preprocess_from_timm

log = logging.getLogger(__name__)

INSTALL = 'pip install -e ".[timm]"'
MIN_VERSION = "1.0.9"


def import_timm() -> Any:
    try:
        import timm
    except ImportError as err:
        raise ProbeError(
            f"encoder=timm needs timm, which is not installed ({err}); install the extra with "
            f'`{INSTALL}` (or `pip install "timm>={MIN_VERSION}"`)'
        ) from err
    return timm


def create(
    model: str, *, checkpoint: str | None, model_kwargs: dict, overlay: dict
) -> torch.nn.Module:
    """`timm.create_model`, pretrained from the hub or from a local weights file."""
    timm = import_timm()
    overlay = {k: tuple(v) if isinstance(v, list) else v for k, v in (overlay or {}).items()}
    if checkpoint:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ProbeError(
                f"encoder.checkpoint={checkpoint!r}: no such file; give a weights file"
            )
        overlay["file"] = str(path)
    try:
        net = timm.create_model(model, pretrained=True, pretrained_cfg_overlay=overlay,
                                **dict(model_kwargs or {}))  # fmt: skip
    except RuntimeError as err:
        where = f"encoder.checkpoint={checkpoint!r}" if checkpoint else "the hub weights"
        why = " ".join(str(err).split())[:400]  # torch's load errors span many lines
        raise ProbeError(
            f"encoder.model={model!r}: timm could not build it or load {where}: {why}. Check "
            "the architecture name (timm.list_models) and that the weights belong to it"
        ) from err
    return net.eval().requires_grad_(False)


def token_norm(net: torch.nn.Module) -> torch.nn.Module | None:
    """`fc_norm` when it is the model's only final norm (`norm` is an Identity), else None:
    `forward_features` has then left the tokens without it."""
    norm, fc_norm = getattr(net, "norm", None), getattr(net, "fc_norm", None)
    if isinstance(norm, torch.nn.Module) and not isinstance(norm, torch.nn.Identity):
        return None
    if isinstance(fc_norm, torch.nn.Module) and not isinstance(fc_norm, torch.nn.Identity):
        return fc_norm
    return None


def token_layout(net: torch.nn.Module) -> dict[str, Any]:
    """What the token kinds need: a token sequence, a class token, and for the block kinds
    (`last4`, `cls.l-2`, ...) a `forward_intermediates` over `depth` blocks (0: none)."""
    prefix = getattr(net, "num_prefix_tokens", None)
    has_tokens = prefix is not None and hasattr(net, "patch_embed")
    has_cls = has_tokens and getattr(net, "cls_token", None) is not None
    fi = getattr(net, "forward_intermediates", None)
    params = inspect.signature(fi).parameters if fi is not None else {}
    fits = has_tokens and {"return_prefix_tokens", "norm", "output_fmt"} <= set(params)
    return {"prefix": int(prefix or 0), "has_tokens": has_tokens, "has_cls": has_cls,
            "depth": len(getattr(net, "blocks", ())) if fits else 0}  # fmt: skip


class TimmForward:
    """Batch -> features by kind from one pass of a timm model; `norm`: the final norm the
    token kinds still need (`token_norm`), applied to every token."""

    def __init__(
        self,
        net: torch.nn.Module,
        kinds: tuple[str, ...],
        *,
        prefix: int,
        norm: torch.nn.Module | None = None,
        depth: int = 0,
    ) -> None:
        self.net = net
        self.kinds = kinds
        self.prefix = prefix
        self.norm = norm if norm is not None else torch.nn.Identity()
        self.depth = depth
        self.take = K.blocks_needed(kinds, depth)

    def __call__(self, images: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        blocks: dict[int, torch.Tensor] = {}
        if self.take:  # returned in block order, which `take` is sorted in
            final, inter = self.net.forward_intermediates(
                images, indices=self.take, return_prefix_tokens=self.prefix > 0, norm=True,
                output_fmt="NLC",
            )  # fmt: skip
            whole = [torch.cat([p, s], dim=1) for s, p in inter] if self.prefix else inter
            blocks = {i: self.norm(b) for i, b in zip(self.take, whole, strict=True)}
        else:
            final = self.net.forward_features(images)
        pooled = None
        if "pooler_output" in self.kinds:
            pooled = self.net.forward_head(final, pre_logits=True)
        normed = self.norm(final) if K.NEED_FINAL & set(self.kinds) else None
        tokens = K.Tokens(pooled=pooled, final=normed, prefix=self.prefix, blocks=blocks,
                          depth=self.depth)  # fmt: skip
        feats = K.select(self.kinds, tokens)
        return feats[self.kinds[0]] if len(self.kinds) == 1 else feats


def data_config(net: torch.nn.Module, resolution: int | None) -> dict[str, Any]:
    """timm's eval data config of the model (at `resolution` when it is set)."""
    from timm.data import resolve_model_data_config

    args = {"input_size": (3, int(resolution), int(resolution))} if resolution else None
    return resolve_model_data_config(net, args=args)


def check_resolution(model: str, net: torch.nn.Module, resolution: int | None) -> None:
    """A ViT whose patch embedding is strict about its input size (timm's `PatchEmbed`
    `strict_img_size`, off with `dynamic_img_size`) takes only that size."""
    embed = getattr(net, "patch_embed", None)
    native = getattr(embed, "img_size", None)
    strict = getattr(embed, "strict_img_size", False) and not getattr(net, "dynamic_img_size", 0)
    if resolution is None or native is None or not strict:
        return
    if tuple(native) != (int(resolution), int(resolution)):
        raise ProbeError(
            f"encoder.resolution={resolution} but {model!r} takes {list(native)} px images; "
            f"set encoder.resolution={native[0]} (or encoder.model_kwargs.img_size)"
        )


def build(
    *,
    model: str,
    checkpoint: str | None = None,
    model_kwargs: dict | None = None,
    pretrained_cfg_overlay: dict | None = None,
    feature: str = "pooler_output",
    features: list[str] | None = None,
    preprocess: dict | None = None,
    resolution: int | None = None,
    width: int | None = None,
    token_pool: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    **_: Any,
) -> Encoder:
    kinds = K.requested(feature, features)
    net = create(model, checkpoint=checkpoint, model_kwargs=model_kwargs or {},
                 overlay=pretrained_cfg_overlay or {})  # fmt: skip
    layout = token_layout(net)
    described = f"{model!r} (timm {type(net).__name__})"
    K.check_available(kinds, K.available(**{k: layout[k] for k in ("has_tokens", "has_cls",
                      "depth")}), model=described)  # fmt: skip
    K.check_layers(kinds, layout["depth"], model=described)
    K.check_width(width, getattr(net, "num_features", None), model=model)
    check_resolution(model, net, resolution)
    if preprocess is None:
        preprocess = preprocess_from_timm(data_config(net, resolution), model=model)
    log.info("timm %s (%s): preprocess %s", model, type(net).__name__, preprocess)
    forward = TimmForward(net.to(device), kinds, prefix=layout["prefix"], norm=token_norm(net),
                          depth=layout["depth"])  # fmt: skip
    return Encoder(
        transform=build_transform(**dict(preprocess)),
        forward=forward,
        device=device,
        dtype=dtype,
        feature_dim=getattr(net, "num_features", None),
        kinds=kinds,
        prefix_tokens=layout["prefix"],
        token_pool=token_pool,
    )
