"""What every encoder family returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str, device: str) -> str:
    """`auto` means bf16 autocast on CUDA and plain fp32 elsewhere (the protocol's default)."""
    from probe.core.errors import ProbeError

    if dtype == "auto":
        return "bfloat16" if str(device).startswith("cuda") else "float32"
    if dtype not in DTYPES:
        raise ProbeError(f"encoder.dtype={dtype!r} is not valid; use auto or one of {list(DTYPES)}")
    return dtype


@dataclass
class Encoder:
    """A frozen feature extractor.

    `transform` maps one loaded sample (PIL image or vector) to a tensor and must be picklable;
    `forward` maps a batch on `device` to (B, D) features. `embed` wraps it with
    inference mode and autocast so families only write the model call.
    """

    transform: Callable[[Any], torch.Tensor]
    forward: Callable[[torch.Tensor], torch.Tensor]
    device: str = "cpu"
    dtype: str = "float32"
    feature_dim: int | None = None

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True)
        use_autocast = self.dtype != "float32"
        device_type = "cuda" if str(self.device).startswith("cuda") else "cpu"
        with torch.autocast(device_type, dtype=DTYPES[self.dtype], enabled=use_autocast):
            feats = self.forward(batch)
        return feats.float()
