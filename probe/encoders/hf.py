"""Hugging Face vision towers (CLIP, MLCD, SigLIP and any `AutoModel` vision checkpoint).

The protocol's feature is `pooler_output`: the LayerNorm'd CLS token before any projection
for CLIP/MLCD, the attention-pool head for SigLIP. From a full two-tower checkpoint only the
vision tower is loaded, so the text tower never costs memory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from probe.encoders.base import Encoder
from probe.encoders.preprocess import build_transform, preprocess_from_hf
from probe.errors import ProbeError

log = logging.getLogger(__name__)

# Full two-tower model types -> the class that loads their vision tower alone.
VISION_TOWERS = {
    "clip": "CLIPVisionModel",
    "siglip": "SiglipVisionModel",
    "siglip2": "Siglip2VisionModel",
}
FEATURES = ("pooler_output", "cls", "mean")


def _load_model(model: str, *, revision: str, trust_remote_code: bool, expected_type: str | None):
    import transformers

    if trust_remote_code:
        log.warning("encoder.trust_remote_code is on: %s may run code from its repository", model)
    try:
        config = transformers.AutoConfig.from_pretrained(
            model, revision=revision, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as err:
        raise ProbeError(
            f"encoder.model={model!r} (revision {revision!r}) could not be loaded: {err}. "
            "Give a Hugging Face hub id (with network or a warm HF cache) or a local directory "
            "written by save_pretrained."
        ) from err
    if expected_type and config.model_type not in (expected_type, _tower_parent(expected_type)):
        raise ProbeError(
            f"encoder.model={model!r} is a {config.model_type!r} checkpoint, but this encoder "
            f"config expects {expected_type!r}; check encoder.model or encoder.model_type"
        )
    cls_name = VISION_TOWERS.get(config.model_type)
    cls = getattr(transformers, cls_name) if cls_name else transformers.AutoModel
    net = (
        cls.from_pretrained(
            model,
            revision=revision,
            trust_remote_code=trust_remote_code,
            attn_implementation="sdpa",
        )
        if _supports_sdpa(cls)
        else cls.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code)
    )
    return net.eval()


def _tower_parent(model_type: str) -> str:
    """`clip_vision_model` also accepts a full `clip` checkpoint (its vision tower is used)."""
    return model_type.removesuffix("_vision_model")


def _supports_sdpa(cls: Any) -> bool:
    return bool(getattr(cls, "_supports_sdpa", False))


class HFForward:
    """Batch -> features from a transformers vision model, by the configured feature kind."""

    def __init__(self, net: torch.nn.Module, feature: str) -> None:
        self.net = net
        self.feature = feature

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.net(pixel_values=pixel_values)
        if self.feature == "pooler_output":
            if getattr(out, "pooler_output", None) is None:
                raise ProbeError("this model has no pooler_output; set encoder.feature=cls or mean")
            return out.pooler_output
        hidden = out.last_hidden_state
        if self.feature == "cls":
            return hidden[:, 0]
        return hidden[:, 1:].mean(dim=1)


def build(
    *,
    model: str,
    revision: str = "main",
    feature: str = "pooler_output",
    preprocess: dict | None = None,
    model_type: str | None = None,
    trust_remote_code: bool = False,
    device: str = "cpu",
    dtype: str = "float32",
    **_: Any,
) -> Encoder:
    if feature not in FEATURES:
        raise ProbeError(f"encoder.feature={feature!r} unknown; allowed: {', '.join(FEATURES)}")
    net = _load_model(
        model, revision=revision, trust_remote_code=trust_remote_code, expected_type=model_type
    ).to(device)
    if preprocess is None:
        preprocess = _checkpoint_preprocess(model, revision)
    transform = build_transform(**dict(preprocess))
    width = getattr(net.config, "hidden_size", None)
    return Encoder(
        transform=transform,
        forward=HFForward(net, feature),
        device=device,
        dtype=dtype,
        feature_dim=width,
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
