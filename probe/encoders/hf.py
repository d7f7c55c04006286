"""Hugging Face vision towers (CLIP, MLCD, SigLIP and any `AutoModel` vision checkpoint).

The protocol's feature is `pooler_output`: the LayerNorm'd CLS token before any projection
for CLIP/MLCD and DINOv2, the attention-pool head for SigLIP (and SigLIP 2's fixed-resolution
checkpoints, which are `siglip` checkpoints). The other kinds (`probe/encoders/kinds.py`)
come from the same forward pass, after the model's final norm (`NORM_AFTER_OUTPUT`,
`NORMED_OUTPUT`; `probe/encoders/hf_kinds.py`). From a full two-tower checkpoint only the
vision tower is loaded (with its projection head for `projected`), so the text tower never
costs memory. Weights are always loaded in
float32 (transformers 5 would otherwise keep a checkpoint's stored dtype); reduced precision
comes from autocast in `Encoder.embed`, so `encoder.dtype` alone decides the compute dtype.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from probe.core.errors import ProbeError
from probe.encoders import kinds as K
from probe.encoders.base import Encoder
from probe.encoders.hf_kinds import (  # noqa: F401 - HFForward is imported from here too
    HFForward,
    final_norm_and_blocks,
    has_projection,
    projection_kwargs,
    split_projection,
)
from probe.encoders.hub import commit_for
from probe.encoders.preprocess import build_transform, preprocess_from_hf

log = logging.getLogger(__name__)

# Full two-tower model types -> the class that loads their vision tower alone.
VISION_TOWERS = {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel"}
# Vision towers with no CLS token: every output token is a patch (SigLIP pools by attention).
NO_CLS_TOKEN = ("siglip", "siglip_vision_model")
# SigLIP 2 NaFlex towers take patch sequences with masks and spatial shapes, not images.
NAFLEX = ("siglip2", "siglip2_vision_model")
# Position encodings that work at any resolution (MLCD's 2D RoPE): a resolution that differs
# from the checkpoint's is only a warning there.
ANY_RESOLUTION = ("mlcd_vision_model",)
# Position embeddings interpolated to every input (DINOv2 is configured at 518 px and
# evaluated at 224 px): the resolution is the preprocessing's alone.
INTERPOLATED = ("dinov2", "dinov2_with_registers")
# Where the final norm sits (read in transformers 5.24.0). Here `last_hidden_state` is the last
# block's output and `post_layernorm` is applied to the pooled CLS alone
# (models/clip/modeling_clip.py lines 639-641, models/mlcd/modeling_mlcd.py lines 542-544):
# the family applies it to every token, as the token kinds' definition asks.
NORM_AFTER_OUTPUT = ("clip", "clip_vision_model", "mlcd_vision_model")
# Here `last_hidden_state` is already after it: `layernorm` over the whole sequence
# (models/dinov2/modeling_dinov2.py line 415, models/dinov2_with_registers/
# modeling_dinov2_with_registers.py line 422), `post_layernorm` over every token before the
# attention-pool head (models/siglip/modeling_siglip.py lines 610-613), ViT's `layernorm`
# (models/vit/modeling_vit.py line 384). Other model types give `pooler_output` only: the token
# kinds need to know where their final norm sits.
NORMED_OUTPUT = ("dinov2", "dinov2_with_registers", "siglip", "siglip_vision_model", "vit")
UNPLACED = ", a model type whose final norm hf.py does not place; token kinds need it"


def load_config(model: str, *, revision: str, trust_remote_code: bool) -> Any:
    import transformers

    try:
        return transformers.AutoConfig.from_pretrained(
            model, revision=revision, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as err:
        raise ProbeError(
            f"encoder.model={model!r} (encoder.revision={revision!r}) could not be loaded: "
            f"{err}. Give a Hugging Face hub id and a revision that exists (offline, one already "
            "in the local HF cache) or a local directory written by save_pretrained."
        ) from err


def check_model_type(model: str, config: Any, expected: str | None) -> None:
    """`clip_vision_model` also accepts a full `clip` checkpoint (its vision tower is used)."""
    if not expected:
        return
    allowed = {expected, expected.removesuffix("_vision_model")}
    if config.model_type not in allowed:
        raise ProbeError(
            f"encoder.model={model!r} is a {config.model_type!r} checkpoint, but this encoder "
            f"config expects encoder.model_type={expected!r}; check encoder.model, or set "
            f"encoder.model_type={config.model_type} (or null) if that checkpoint is intended"
        )


def model_class(config: Any) -> Any:
    """The concrete class to load: the vision tower of a two-tower model, else AutoModel's."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    name = VISION_TOWERS.get(config.model_type)
    if name:
        return getattr(transformers, name)
    try:
        return MODEL_MAPPING[type(config)]
    except KeyError:  # remote code or an unknown config: AutoModel resolves it
        return transformers.AutoModel


def load_model(
    model: str, config: Any, *, revision: str, trust_remote_code: bool, projected: bool = False
):
    """Load in float32, with SDPA attention where the class offers it; refuse missing weights.
    `projected`: with the projection head where it is a separate module (`hf_kinds`)."""
    cls = model_class(config)
    kwargs: dict[str, Any] = {
        "revision": revision,
        "trust_remote_code": trust_remote_code,
        "dtype": torch.float32,
        "output_loading_info": True,
    }
    with_head = projection_kwargs(config) if projected else None
    if with_head is not None:
        import transformers

        cls = getattr(transformers, with_head[0])
        kwargs.update(with_head[1])
    if getattr(cls, "_supports_sdpa", False):
        kwargs["attn_implementation"] = "sdpa"
    if trust_remote_code:
        log.warning("encoder.trust_remote_code is on: %s may run code from its repository", model)
    with _quiet_transformers(config.model_type in VISION_TOWERS):
        net, info = cls.from_pretrained(model, **kwargs)
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise ProbeError(
            f"encoder.model={model!r} lacks {len(missing)} weight(s) of {cls.__name__} "
            f"(e.g. {', '.join(missing[:5])}); they would be random. Is it the right checkpoint?"
        )
    log.info(
        "loaded %s from %s (attention: %s)",
        type(net).__name__,
        model,
        getattr(net.config, "_attn_implementation", "?"),
    )
    return net.eval().requires_grad_(False)


@contextmanager
def _quiet_transformers(quiet: bool) -> Iterator[None]:
    """A two-tower checkpoint's text weights are expected leftovers: skip that load report."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    if quiet:
        hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def check_resolution(model: str, config: Any, resolution: int | None) -> None:
    native = getattr(config, "vision_config", config)
    native = getattr(native, "image_size", None)
    if resolution is None or native is None or int(resolution) == int(native):
        return
    if config.model_type in INTERPOLATED:
        log.info("%s interpolates its position embeddings; running it at %s px", model, resolution)
        return
    if config.model_type in ANY_RESOLUTION:
        log.warning("%s was trained at %s px; running it at %s px", model, native, resolution)
        return
    raise ProbeError(
        f"encoder.resolution={resolution} but {model!r} takes {native} px images "
        f"(absolute position embeddings); set encoder.resolution={native}"
    )


def weights_commit(model: str, revision: str) -> str | None:
    """The hub commit `revision` names (None for a local directory: its files are stamped)."""
    if Path(model).expanduser().is_dir():
        return None
    return commit_for(model, revision, anchor="config.json")


def build(
    *,
    model: str,
    revision: str = "main",
    feature: str = "pooler_output",
    features: list[str] | None = None,
    preprocess: dict | None = None,
    model_type: str | None = None,
    resolution: int | None = None,
    width: int | None = None,
    trust_remote_code: bool = False,
    token_pool: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    **_: Any,
) -> Encoder:
    kinds = K.requested(feature, features)
    config = load_config(model, revision=revision, trust_remote_code=trust_remote_code)
    check_model_type(model, config, model_type)
    if config.model_type in NAFLEX:
        raise ProbeError(
            f"encoder.model={model!r} is a SigLIP 2 NaFlex checkpoint ({config.model_type}), whose "
            "tower takes patch sequences, not images; use a fixed-resolution SigLIP 2 checkpoint "
            "(model_type siglip, e.g. google/siglip2-so400m-patch14-384)"
        )
    has_cls = config.model_type not in NO_CLS_TOKEN
    vision = getattr(config, "vision_config", config)
    K.check_width(width, getattr(vision, "hidden_size", None), model=model)
    placed = config.model_type in NORM_AFTER_OUTPUT + NORMED_OUTPUT
    note = ("" if has_cls else ", no CLS token") + ("" if placed else UNPLACED)
    described = f"{model!r} ({config.model_type}{note})"
    depth = getattr(vision, "num_hidden_layers", None)  # checked again on the loaded blocks
    has = {"has_cls": has_cls, "projected": has_projection(config)}
    K.check_available(kinds, K.available(has_tokens=placed, depth=depth or K.LAST_BLOCKS, **has),
                      model=described)  # fmt: skip
    K.check_layers(kinds, depth, model=described)
    check_resolution(model, config, resolution)
    net = load_model(model, config, revision=revision, trust_remote_code=trust_remote_code,
                     projected=K.PROJECTED in kinds)  # fmt: skip
    net, projection = split_projection(net, config)
    if projection is not None:
        projection.to(device)
    norm, blocks = final_norm_and_blocks(net)
    depth = len(blocks) if norm is not None and blocks is not None else 0
    K.check_available(kinds, K.available(has_tokens=True, depth=depth, **has),
                      model=f"{described}, final norm or blocks not found")  # fmt: skip
    K.check_layers(kinds, depth, model=described)
    if preprocess is None:
        preprocess = _checkpoint_preprocess(model, revision)
    prefix = 1 + int(getattr(net.config, "num_register_tokens", 0) or 0) if has_cls else 0
    forward = HFForward(net.to(device), kinds, prefix=prefix, final_norm=norm, blocks=blocks,
                        norm_tokens=config.model_type in NORM_AFTER_OUTPUT,
                        projection=projection)  # fmt: skip
    return Encoder(
        transform=build_transform(**dict(preprocess)),
        forward=forward,
        device=device,
        dtype=dtype,
        feature_dim=getattr(net.config, "hidden_size", None),
        kinds=kinds,
        prefix_tokens=prefix,
        token_pool=token_pool,
    )


def _checkpoint_preprocess(model: str, revision: str) -> dict:
    if Path(model).expanduser().is_dir():
        return preprocess_from_hf(Path(model).expanduser())
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(model, "preprocessor_config.json", revision=revision)
    except Exception as err:  # noqa: BLE001 - any hub failure gets the same fix
        raise ProbeError(
            f"could not fetch preprocessor_config.json for {model!r}: {err}; "
            "set encoder.preprocess in the config instead"
        ) from err
    return preprocess_from_hf(Path(path).parent)
