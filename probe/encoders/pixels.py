"""Raw pixels as features: the classic no-model baseline (and the offline demo's encoder).

The image becomes a tensor exactly as torchvision's `ToTensor` makes one (tested bit for bit
on every PIL mode), without importing torchvision: that import (with torch._dynamo behind
it) costs about 2 s of CPU at start-up and more at exit, for a run that needs none of it.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch
from PIL import Image

from probe.encoders.base import Encoder

# No model, so no autocast: the features are float32 whatever encoder.dtype and the device say
# (`probe.encoders.base.compute_dtype` records this dtype, not the asked one).
COMPUTE_DTYPE = "float32"
# No model, so no token sequence: the `tokens` kinds are refused before any work
# (`probe.encoders.base.has_tokens`).
TOKENS = False


# torchvision 0.29 transforms/functional.py `to_tensor`: these modes keep their own dtype
# (and are not scaled); every other mode is read as uint8 and divided by 255.
_KEEP_DTYPE = {"I": np.int32, "I;16" if sys.byteorder == "little" else "I;16B": np.int16,
               "F": np.float32}  # fmt: skip


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image -> C x H x W tensor: torchvision's `to_tensor` for PIL images."""
    img = torch.from_numpy(np.array(image, _KEEP_DTYPE.get(image.mode, np.uint8), copy=True))
    if image.mode == "1":
        img = 255 * img
    img = img.view(image.size[1], image.size[0], len(image.getbands()))
    img = img.permute((2, 0, 1)).contiguous()
    if img.dtype == torch.uint8:
        return img.to(dtype=torch.get_default_dtype()).div(255)
    return img


class PixelTransform:
    """PIL image -> flat float vector in [0, 1], optionally resized first."""

    def __init__(self, size: int | None, mode: str | None) -> None:
        self.size = size
        self.mode = mode

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if self.mode:
            image = image.convert(self.mode)
        if self.size:
            image = image.resize((self.size, self.size), Image.BICUBIC)
        return to_tensor(image).flatten()


def _identity(batch: torch.Tensor) -> torch.Tensor:
    return batch


def build(
    *, size: int | None = None, mode: str | None = None, device: str = "cpu", **_: Any
) -> Encoder:
    return Encoder(transform=PixelTransform(size, mode), forward=_identity, device=device)
