"""Features computed elsewhere (`dataset=npz`): each sample already is its feature vector.

`transform` turns a row into a float32 tensor and `forward` is the identity, so the rows go
through the same cache and probe path as any encoder's features. The copy runs on the CPU:
moving vectors to a GPU and back would only cost time. A split that hands out rows in blocks
(`dataset=npz`) is copied block by block (`block`: the same float32 cast, without a per-row
DataLoader), as fast as the disk reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from probe.encoders.base import Encoder
from probe.encoders.preprocess import as_tensor

# No model, so no autocast: the features are float32 whatever encoder.dtype and the device say
# (`probe.encoders.base.compute_dtype` records this dtype, not the asked one).
COMPUTE_DTYPE = "float32"
# No model, so no token sequence: the `tokens` kinds are refused before any work
# (`probe.encoders.base.has_tokens`).
TOKENS = False


def _identity(batch: torch.Tensor) -> torch.Tensor:
    return batch


def as_float32(rows: Any) -> np.ndarray:
    """A block of rows as float32: `as_tensor`'s cast, row for row (a view when already float32)."""
    return np.asarray(rows, dtype=np.float32)


def build(**_: Any) -> Encoder:
    return Encoder(transform=as_tensor, forward=_identity, device="cpu", dtype="float32",
                   block=as_float32)  # fmt: skip
