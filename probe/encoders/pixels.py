"""Raw pixels as features: the classic no-model baseline (and the offline demo's encoder)."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image
from torchvision import transforms as T

from probe.encoders.base import Encoder

# No model, so no autocast: the features are float32 whatever encoder.dtype and the device say
# (`probe.encoders.base.compute_dtype` records this dtype, not the asked one).
COMPUTE_DTYPE = "float32"


class PixelTransform:
    """PIL image -> flat float vector in [0, 1], optionally resized first."""

    def __init__(self, size: int | None, mode: str | None) -> None:
        self.size = size
        self.mode = mode
        self.to_tensor = T.ToTensor()

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if self.mode:
            image = image.convert(self.mode)
        if self.size:
            image = image.resize((self.size, self.size), Image.BICUBIC)
        return self.to_tensor(image).flatten()


def _identity(batch: torch.Tensor) -> torch.Tensor:
    return batch


def build(
    *, size: int | None = None, mode: str | None = None, device: str = "cpu", **_: Any
) -> Encoder:
    return Encoder(transform=PixelTransform(size, mode), forward=_identity, device=device)
