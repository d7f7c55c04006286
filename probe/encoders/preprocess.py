"""Evaluation transforms, built from the `preprocess` block of an encoder config.

The reference for CLIP/MLCD is OpenAI's own transform (torchvision Resize of the short side
with PIL bicubic, CenterCrop, ToTensor, Normalize), so we build exactly that with torchvision
rather than approximating it. `mode: squash` resizes straight to a square (SigLIP).
"""

from __future__ import annotations

import json
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
    mode: str = "shortest",
    interpolation: str = "bicubic",
    mean: list[float] = (0.5, 0.5, 0.5),
    std: list[float] = (0.5, 0.5, 0.5),
    **_: Any,
) -> T.Compose:
    if interpolation not in INTERPOLATIONS:
        raise ProbeError(
            f"preprocess.interpolation={interpolation!r} unknown; allowed: {list(INTERPOLATIONS)}"
        )
    interp = INTERPOLATIONS[interpolation]
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
