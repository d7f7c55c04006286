"""Loading files a user hands us (checkpoints, feature arrays) without ever unpickling them.

A pickle can run arbitrary code when loaded, so a checkpoint or .npy from the internet is
only read through formats that cannot: safetensors, `torch.load(weights_only=True)` (tensors
and plain containers only) and `np.load(allow_pickle=False)`. A file that needs more is
refused with the way to convert it, never loaded "just this once".
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probe.core.errors import ProbeError


def load_checkpoint(path: str | Path) -> Any:
    """A state dict from .safetensors or a weights-only torch file; pickles are refused."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ProbeError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as err:
        raise ProbeError(
            f"refusing to load {path}: it is not a weights-only checkpoint (loading it would "
            "unpickle arbitrary objects, which can run code). Convert it where you trust it: "
            "`safetensors.torch.save_file(state_dict, 'model.safetensors')`"
        ) from err


def load_npy(path: str | Path, *, mmap: bool = False) -> np.ndarray:
    """A .npy of plain numbers; object (pickle-bearing) arrays are refused."""
    path = Path(path).expanduser()
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as err:
        raise ProbeError(
            f"refusing to load {path}: {err}. Feature files must hold plain numeric arrays"
        ) from err
