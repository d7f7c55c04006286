"""Independent reference preprocessing, written with PIL and numpy only (never probe's code).

OpenAI's CLIP evaluation transform: bicubic resize of the short side (the long side truncated,
as torchvision computes it), a center crop whose offset is `int(round((h - th) / 2))` (Python's
round, half to even, as torchvision's CenterCrop), scale to [0, 1], normalise. SigLIP: bicubic
resize straight to a square, normalise with mean/std 0.5. Inputs are converted to 8-bit RGB
first: alpha dropped, 16-bit scaled by 255/65535.
"""

from __future__ import annotations

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


def openai_reference(image: Image.Image, size: int, mean=OPENAI_MEAN, std=OPENAI_STD):
    image = rgb8(image)
    w, h = image.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    image = image.resize((new_w, new_h), Image.BICUBIC)
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    image = image.crop((left, top, left + size, top + size))
    return normalise(image, mean, std)


def squash_reference(image: Image.Image, size: int, mean=(0.5,) * 3, std=(0.5,) * 3):
    return normalise(rgb8(image).resize((size, size), Image.BICUBIC), mean, std)


def reference(image: Image.Image, preprocess: dict) -> np.ndarray:
    """The reference transform a config's `preprocess` block names."""
    assert preprocess["interpolation"] == "bicubic"
    if preprocess["mode"] == "shortest":
        assert preprocess["crop"] == preprocess["size"]
        return openai_reference(image, preprocess["size"], preprocess["mean"], preprocess["std"])
    assert preprocess["mode"] == "squash" and preprocess["crop"] is None
    return squash_reference(image, preprocess["size"], preprocess["mean"], preprocess["std"])


def sample_photos() -> list[Image.Image]:
    """scikit-learn's two bundled photos (china.jpg, flower.jpg; 640 x 427)."""
    from sklearn.datasets import load_sample_images

    return [Image.fromarray(img) for img in load_sample_images().images]
