"""Independent reference preprocessing, written with PIL and numpy only (never probe's code).

OpenAI's CLIP evaluation transform: bicubic resize of the short side (the long side truncated,
as torchvision computes it), a center crop whose offset is `int(round((h - th) / 2))` (Python's
round, half to even, as torchvision's CenterCrop), scale to [0, 1], normalise. SigLIP: bicubic
resize straight to a square, normalise with mean/std 0.5. timm's `crop_pct` (dinov2, EVA-02):
resize to floor(size / crop_pct), then center-crop `size`. Inputs are converted to 8-bit RGB
first: alpha dropped, 16-bit scaled by 255/65535.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def rgb8(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I;16"):
        arr = np.asarray(image).astype(np.float64)
        return Image.fromarray(np.round(arr / 65535.0 * 255.0).astype(np.uint8)).convert("RGB")
    if image.mode == "RGBA":
        return Image.fromarray(np.asarray(image)[..., :3].copy())
    return image.convert("RGB")


def normalise(image: Image.Image, mean, std) -> np.ndarray:
    arr = np.asarray(image, dtype=np.float64) / 255.0
    arr = (arr - np.asarray(mean)) / np.asarray(std)
    return arr.transpose(2, 0, 1)


RESAMPLE = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}


def center_crop(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def openai_reference(
    image: Image.Image, size: int, mean=OPENAI_MEAN, std=OPENAI_STD, *, crop=None, resample=3
):
    """Short side to `size`, center crop `crop` (default: `size`)."""
    image = rgb8(image)
    w, h = image.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    image = image.resize((new_w, new_h), resample)
    return normalise(center_crop(image, crop or size), mean, std)


def squash_reference(
    image: Image.Image, size: int, mean=(0.5,) * 3, std=(0.5,) * 3, *, crop=None, resample=3
):
    image = rgb8(image).resize((size, size), resample)
    return normalise(center_crop(image, crop) if crop else image, mean, std)


def reference(image: Image.Image, preprocess: dict) -> np.ndarray:
    """The reference transform a config's `preprocess` block names."""
    resample = RESAMPLE[preprocess["interpolation"]]
    size, crop = preprocess["size"], preprocess.get("crop")
    if preprocess.get("crop_pct") is not None:
        assert crop is None
        size, crop = math.floor(size / preprocess["crop_pct"]), size
    kw = {"crop": crop, "resample": resample}
    if preprocess["mode"] == "shortest":
        assert crop is not None
        return openai_reference(image, size, preprocess["mean"], preprocess["std"], **kw)
    assert preprocess["mode"] == "squash"
    return squash_reference(image, size, preprocess["mean"], preprocess["std"], **kw)


def sample_photos() -> list[Image.Image]:
    """scikit-learn's two bundled photos (china.jpg, flower.jpg; 640 x 427)."""
    from sklearn.datasets import load_sample_images

    return [Image.fromarray(img) for img in load_sample_images().images]
