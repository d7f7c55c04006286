"""The run's compute device, checked once so every stage gets the same answer."""

from __future__ import annotations

import torch

from probe.core.errors import ProbeError


def resolve_device(device: str) -> str:
    """`auto`: the GPU where one is usable, else the CPU; `cuda` without a GPU is refused."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ProbeError(f"device={device} was asked for but no CUDA GPU is usable; use device=cpu")
    return str(device)
