"""The pixels encoder's image -> tensor step is torchvision's `ToTensor`, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from probe.encoders.pixels import to_tensor

MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I", "I;16", "F"]


def image(mode: str) -> Image.Image:
    rng = np.random.default_rng(len(mode))
    rgb = Image.fromarray(rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8))
    if mode in ("I", "I;16", "F"):
        return Image.fromarray(rng.integers(0, 60000, size=(5, 7)).astype(np.int32)).convert(mode)
    return rgb.convert(mode)


@pytest.mark.parametrize("mode", MODES)
def test_same_tensor_as_torchvision_to_tensor(mode: str) -> None:
    from torchvision.transforms import ToTensor

    img = image(mode)
    want, got = ToTensor()(img), to_tensor(img)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert torch.equal(got, want)
