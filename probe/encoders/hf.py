"""Hugging Face vision towers (CLIP, MLCD, SigLIP and any `AutoModel` vision checkpoint).

The protocol's feature is `pooler_output`: the LayerNorm'd CLS token before any projection
for CLIP/MLCD, the attention-pool head for SigLIP. From a full two-tower checkpoint only the
vision tower is loaded, so the text tower never costs memory. Weights are always loaded in
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
from probe.encoders.base import Encoder
from probe.encoders.hub import commit_for
from probe.encoders.preprocess import build_transform, preprocess_from_hf

log = logging.getLogger(__name__)

# Full two-tower model types -> the class that loads their vision tower alone.
VISION_TOWERS = {
    "clip": "CLIPVisionModel",
    "siglip": "SiglipVisionModel",
    "siglip2": "Siglip2VisionModel",
}
FEATURES = ("pooler_output", "cls", "mean")
# Vision towers with no CLS token: every output token is a patch (SigLIP pools by attention).
NO_CLS_TOKEN = ("siglip", "siglip2", "siglip_vision_model", "siglip2_vision_model")
# Position encodings that work at any resolution (MLCD's 2D RoPE): a resolution that differs
# from the checkpoint's is only a warning there.
ANY_RESOLUTION = ("mlcd_vision_model",)


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


def load_model(model: str, config: Any, *, revision: str, trust_remote_code: bool):
    """Load in float32, with SDPA attention where the class offers it; refuse missing weights."""
    cls = model_class(config)
    kwargs: dict[str, Any] = {
        "revision": revision,
        "trust_remote_code": trust_remote_code,
        "dtype": torch.float32,
        "output_loading_info": True,
    }
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


class HFForward:
    """Batch -> features from a transformers vision model, by the configured feature kind.

    `cls` is the first token of `last_hidden_state` (before the final norm for CLIP and MLCD);
    `mean` averages the patch tokens (every token where the model has no CLS token).
    """

    def __init__(self, net: torch.nn.Module, feature: str, *, has_cls: bool = True) -> None:
        self.net = net
        self.feature = feature
        self.has_cls = has_cls

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.net(pixel_values=pixel_values)
        if self.feature == "pooler_output":
            if getattr(out, "pooler_output", None) is None:
                raise ProbeError("this model has no pooler_output; set encoder.feature=cls or mean")
            return out.pooler_output
        hidden = out.last_hidden_state
        if self.feature == "cls":
            return hidden[:, 0]
        return hidden[:, 1:].mean(dim=1) if self.has_cls else hidden.mean(dim=1)


def check_resolution(model: str, config: Any, resolution: int | None) -> None:
    native = getattr(config, "vision_config", config)
    native = getattr(native, "image_size", None)
    if resolution is None or native is None or int(resolution) == int(native):
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
    preprocess: dict | None = None,
    model_type: str | None = None,
    resolution: int | None = None,
    trust_remote_code: bool = False,
    device: str = "cpu",
    dtype: str = "float32",
    **_: Any,
) -> Encoder:
    if feature not in FEATURES:
        raise ProbeError(f"encoder.feature={feature!r} unknown; allowed: {', '.join(FEATURES)}")
    config = load_config(model, revision=revision, trust_remote_code=trust_remote_code)
    check_model_type(model, config, model_type)
    has_cls = config.model_type not in NO_CLS_TOKEN
    if feature == "cls" and not has_cls:
        raise ProbeError(
            f"encoder.feature=cls: {model!r} ({config.model_type}) has no CLS token; "
            "use encoder.feature=pooler_output or mean"
        )
    check_resolution(model, config, resolution)
    net = load_model(model, config, revision=revision, trust_remote_code=trust_remote_code)
    if preprocess is None:
        preprocess = _checkpoint_preprocess(model, revision)
    return Encoder(
        transform=build_transform(**dict(preprocess)),
        forward=HFForward(net.to(device), feature, has_cls=has_cls),
        device=device,
        dtype=dtype,
        feature_dim=getattr(net.config, "hidden_size", None),
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
