"""The run's compute device, checked once so every stage gets the same answer."""

from __future__ import annotations

from probe.core.errors import ProbeError


def resolve_device(device: str) -> str:
    """`auto`: the GPU where one is usable, else the CPU; `cuda` without a GPU is refused."""
    import torch  # here, not at module level: the table reader uses `auto_dtype` without torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ProbeError(f"device={device} was asked for but no CUDA GPU is usable; use device=cpu")
    return str(device)


def auto_dtype(device: str) -> str:
    """What `encoder.dtype=auto` computes in on `device`: bf16 autocast on CUDA, else fp32.

    The one statement of the rule: the encoders resolve `auto` with it and the paper tables
    use it to tell a protocol run's dtype from a changed one.
    """
    return "bfloat16" if str(device).startswith("cuda") else "float32"
