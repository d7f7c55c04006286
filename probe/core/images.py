"""The one place an image becomes 8-bit RGB: every dataset loader and every transform use it.

A dataset family's loader (image files, in-memory arrays, a Hugging Face copy) returns what
`to_rgb` makes of the stored image, so the encoders' preprocessing always starts from the
same 8-bit RGB whatever the source (the bundled digits alone stay 8-bit grayscale: the
raw-pixel demo reads their 64 values). Converting anywhere else first is how 16-bit images got
clipped to white: PIL's own `convert("RGB")` clips a 16-bit value above 255 instead of
scaling it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB: grayscale, palette, CMYK, alpha and 16-bit inputs.

    16-bit images are scaled by 255/65535 and rounded; a 32-bit integer (`I`) image counts as
    16-bit when a value exceeds 255 (PIL opened 16-bit PNGs as `I` before Pillow 10), else as
    8-bit. Alpha is dropped with the colour channels kept as stored, as OpenAI's
    `convert("RGB")` does; a palette with transparency goes through RGBA for the same result
    without PIL's warning. Done before any resize, so every image gets a bicubic resize of
    its RGB (converting after the resize, as OpenAI's transform does, resizes a palette
    image with nearest neighbour).
    """
    if image.mode == "RGB":
        return image
    if image.mode in (*SIXTEEN_BIT, "I"):
        arr = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode in SIXTEEN_BIT or arr.max() > 255 else 255.0
        arr = np.clip(np.round(arr * (255.0 / peak)), 0, 255).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return image.convert("RGBA").convert("RGB")
    return image.convert("RGB")


def decode(path: str | Path) -> Image.Image:
    """Open and fully decode an image file as 8-bit RGB; raises if the file is damaged.

    `Image.open` alone is lazy (a truncated JPEG would pass); `load()` forces the whole
    decode so damage shows here, with the file's path, not later in a worker.
    """
    with Image.open(path) as im:
        im.load()
        rgb = to_rgb(im)
        return rgb.copy() if rgb is im else rgb  # closing `im` frees its pixels
