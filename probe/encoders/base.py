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
    `forward` maps a batch on `device` to (B, D) features, or to a dict of them by feature
    kind when the family computes several kinds in one pass (`kinds` names them, in the order
    `embed` concatenates them). `embed` wraps it with inference mode and autocast so families
    only write the model call. `feature_dim` is the backbone's width.
    """

    transform: Callable[[Any], torch.Tensor]
    forward: Callable[[torch.Tensor], torch.Tensor | dict[str, torch.Tensor]]
    device: str = "cpu"
    dtype: str = "float32"
    feature_dim: int | None = None
    kinds: tuple[str, ...] = ()

    def _run(self, batch: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        batch = batch.to(self.device, non_blocking=True)
        use_autocast = self.dtype != "float32"
        device_type = "cuda" if str(self.device).startswith("cuda") else "cpu"
        with torch.autocast(device_type, dtype=DTYPES[self.dtype], enabled=use_autocast):
            return self.forward(batch)

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, sum of the kinds' widths) float32: every kind, concatenated in `kinds` order."""
        parts = list(self.embed_kinds(batch).values())
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    @torch.inference_mode()
    def embed_kinds(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Kind -> (B, D_kind) float32; an encoder with one unnamed output gives it as ``""``."""
        out = self._run(batch)
        if isinstance(out, dict):
            return {k: out[k].float() for k in (self.kinds or out)}
        return {self.kinds[0] if self.kinds else "": out.float()}
