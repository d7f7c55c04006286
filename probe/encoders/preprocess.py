"""Evaluation transforms, built from the `preprocess` block of an encoder config.

The reference for CLIP/MLCD is OpenAI's own transform (torchvision Resize of the short side
with PIL bicubic, CenterCrop, ToTensor, Normalize), so we build exactly that with torchvision
rather than approximating it. `mode: squash` resizes straight to a square (SigLIP).
`crop_pct` is timm's: resize to floor(size / crop_pct), then center-crop `size` (DINOv2's
256 -> 224, EVA-02's 336 -> 336, and every timm model's own data config).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from probe.core.errors import ProbeError
from probe.core.images import to_rgb

__all__ = ["ToRGB", "as_tensor", "build_transform", "preprocess_from_hf", "to_rgb"]

INTERPOLATIONS = {
    "bicubic": T.InterpolationMode.BICUBIC,
    "bilinear": T.InterpolationMode.BILINEAR,
    "nearest": T.InterpolationMode.NEAREST,
    "lanczos": T.InterpolationMode.LANCZOS,
}
# PIL resample codes as stored in Hugging Face preprocessor configs.
_PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}


class ToRGB:
    """The transform's first step: the loaders already give 8-bit RGB (then this is a no-op);
    an image handed in directly gets the same conversion (`probe.core.images.to_rgb`)."""

    def __call__(self, image: Image.Image) -> Image.Image:
        return to_rgb(image)


def build_transform(
    *,
    size: int | list[int],
    crop: int | list[int] | None = None,
    crop_pct: float | None = None,
    mode: str = "shortest",
    interpolation: str = "bicubic",
    mean: list[float] = (0.5, 0.5, 0.5),
    std: list[float] = (0.5, 0.5, 0.5),
    **_: Any,
) -> T.Compose:
    """`crop_pct` is timm's: resize to floor(size / crop_pct), then center-crop `size`."""
    if interpolation not in INTERPOLATIONS:
        raise ProbeError(
            f"preprocess.interpolation={interpolation!r} unknown; allowed: {list(INTERPOLATIONS)}"
        )
    interp = INTERPOLATIONS[interpolation]
    if crop_pct is not None:
        size, crop = _crop_pct(size, crop, crop_pct)
    if mode == "shortest":
        steps = [T.Resize(size, interpolation=interp)]
    elif mode == "squash":
        square = (size, size) if isinstance(size, int) else tuple(size)
        steps = [T.Resize(square, interpolation=interp)]
    else:
        raise ProbeError(f"preprocess.mode={mode!r} unknown; allowed: shortest, squash")
    if crop is not None:
        steps.append(T.CenterCrop(crop))
    return T.Compose([ToRGB(), *steps, T.ToTensor(), T.Normalize(mean=list(mean), std=list(std))])


def _crop_pct(size: Any, crop: Any, crop_pct: float) -> tuple[Any, Any]:
    """timm's eval sizes (timm/data/transforms_factory.py `transforms_imagenet_eval`)."""
    if not 0 < float(crop_pct) <= 1:
        raise ProbeError(f"preprocess.crop_pct={crop_pct} must be in (0, 1], e.g. 0.875")
    if crop is not None and crop != size:
        raise ProbeError(
            f"preprocess.crop={crop} with crop_pct={crop_pct}: the crop is `size` then; "
            "drop preprocess.crop (or crop_pct)"
        )
    if isinstance(size, int):
        return math.floor(size / crop_pct), size
    if size[0] != size[1]:
        raise ProbeError(f"preprocess.size={list(size)} with crop_pct: give one square size")
    return math.floor(size[0] / crop_pct), size[0]


def preprocess_from_hf(model_dir: str | Path) -> dict[str, Any]:
    """Read a checkpoint's `preprocessor_config.json` into our `preprocess` block."""
    path = Path(model_dir) / "preprocessor_config.json"
    if not path.is_file():
        raise ProbeError(
            f"no preprocessor_config.json in {model_dir}; set encoder.preprocess "
            "(size, crop, mean, std) in the encoder config"
        )
    cfg = json.loads(path.read_text())
    size = cfg.get("size", 224)
    crop = cfg.get("crop_size") if cfg.get("do_center_crop", True) else None
    if isinstance(size, dict) and "shortest_edge" in size:
        size, mode = size["shortest_edge"], "shortest"
    elif isinstance(size, dict):
        size, mode = [size["height"], size["width"]], "squash"
    else:
        mode = "shortest"
    if isinstance(crop, dict):
        crop = [crop["height"], crop["width"]]
    resample = cfg.get("resample", 3)
    return {
        "size": size,
        "crop": crop,
        "mode": mode,
        "interpolation": _PIL_RESAMPLE.get(resample, "bicubic")
        if isinstance(resample, int)
        else str(resample).lower(),
        "mean": list(cfg.get("image_mean", [0.5, 0.5, 0.5])),
        "std": list(cfg.get("image_std", [0.5, 0.5, 0.5])),
    }


def as_tensor(sample: Any) -> torch.Tensor:
    """Precomputed vectors pass through as float32 tensors."""
    return torch.as_tensor(np.asarray(sample), dtype=torch.float32)


def preprocess_from_timm(data_config: dict[str, Any], *, model: str) -> dict[str, Any]:
    """timm's eval data config (`timm.data.resolve_data_config`) as our `preprocess` block.

    The same steps as timm's `transforms_imagenet_eval` for its `center` and `squash` crop
    modes on a square input: resize (the short side, or both sides) to floor(size / crop_pct),
    center-crop `size`, normalise.
    """
    _, height, width = data_config["input_size"]
    mode = {"center": "shortest", "squash": "squash"}.get(data_config.get("crop_mode") or "center")
    if height != width or mode is None:
        raise ProbeError(
            f"timm model {model!r}: input_size={list(data_config['input_size'])}, "
            f"crop_mode={data_config.get('crop_mode')!r} has no preprocess block equivalent; "
            "set encoder.preprocess explicitly"
        )
    return {
        "size": int(height),
        "crop_pct": float(data_config.get("crop_pct") or 0.875),
        "mode": mode,
        "interpolation": str(data_config.get("interpolation") or "bicubic"),
        "mean": [float(v) for v in data_config["mean"]],
        "std": [float(v) for v in data_config["std"]],
    }
