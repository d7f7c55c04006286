"""The device side of extraction: data loading knobs, OOM fallback, compile, async copies.

Kept apart from the shard bookkeeping in `probe/features/extract.py`: this is what decides images/s.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import Any

import torch
from torch.utils.data import Dataset

from probe.core.errors import ProbeError
from probe.datasets.base import Split
from probe.encoders.base import Encoder

log = logging.getLogger(__name__)
# torch >= 2.5 names it torch.OutOfMemoryError; older releases only torch.cuda.OutOfMemoryError
OOM_ERROR = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError


class Samples(Dataset):
    """A Split viewed as a torch Dataset of (transformed sample, label).

    With `shape` (the first sample's, from the plan), a sample of another shape is refused
    here, naming it: batches are stacked, and an encoder without a resize (`encoder=pixels`
    with `size: null`) on images of several sizes used to fail in torch's collate."""

    def __init__(
        self, split: Split, transform: Any, *, shape: tuple | None = None, desc: str = ""
    ) -> None:
        self.split = split
        self.transform = transform
        self.shape = tuple(shape) if shape is not None else None
        self.desc = desc

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int | torch.Tensor]:
        sample = self.transform(self.split.load(self.split.items[i]))
        if self.shape is not None and tuple(sample.shape) != self.shape:
            name = self.split.ids[i] if self.split.ids is not None else self.split.items[i]
            raise ProbeError(
                f"{self.desc}: {name} becomes a sample of shape {tuple(sample.shape)}, the "
                f"split's first {self.shape}; the encoder's transform must give every image "
                "one shape (encoder=pixels: set encoder.size=N to resize them, and "
                "encoder.mode=RGB if their colour modes differ)"
            )
        label = self.split.labels[i]  # a class index, or a multi-label row of K flags
        return sample, int(label) if label.ndim == 0 else torch.from_numpy(label)


def resolve_num_workers(num_workers: Any, n_items: int, *, procs_per_node: int = 1) -> int:
    """`auto`: the CPUs this job was given (SLURM's count, else the process affinity).

    Under torchrun the node's CPUs are shared by its `procs_per_node` ranks.
    """
    if num_workers != "auto":
        n = int(num_workers)
        if n < 0:
            raise ProbeError(f"num_workers={n} must be >= 0 or 'auto'")
        return n
    if n_items < 4096:  # tiny splits: worker start-up costs more than it saves
        return 0
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    n = int(cpus) if cpus else len(os.sched_getaffinity(0))
    return max(0, min(n // max(procs_per_node, 1) - 1, 32))


class AdaptiveEmbed:
    """`encoder.embed` that halves the sub-batch on CUDA out-of-memory instead of dying.

    The smaller size sticks for the rest of the run (memory does not come back mid-run).
    """

    def __init__(
        self, encoder: Encoder, *, desc: str, by_kind: bool = False, pool: bool = True
    ) -> None:
        self.encoder = encoder
        self.desc = desc
        self.limit: int | None = None
        self.embed = partial(encoder.embed_kinds, pool=pool) if by_kind else encoder.embed

    def __call__(self, images: torch.Tensor) -> Any:
        """(B, D) features (kind -> (B, D_kind) with `by_kind`, a token kind's (B, T, D) pooled
        unless `pool` is false), on the encoder's device."""
        while True:
            step = self.limit or len(images)
            try:
                parts = [self.embed(chunk) for chunk in images.split(step)]
                if isinstance(parts[0], dict):
                    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
                return parts[0] if len(parts) == 1 else torch.cat(parts)
            except OOM_ERROR as err:
                if step <= 1:
                    raise ProbeError(
                        f"{self.desc}: out of GPU memory even at batch size 1; use a GPU with "
                        "more memory or encoder.dtype=bfloat16"
                    ) from err
                self.limit = max(1, step // 2)
                log.warning("%s: out of GPU memory at batch %d, retrying at %d", self.desc, step,
                            self.limit)  # fmt: skip
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()


def compile_encoder(encoder: Encoder) -> Encoder:
    """torch.compile the model (or the forward function): worth it for long extractions."""
    net = getattr(encoder.forward, "net", None)
    if isinstance(net, torch.nn.Module):
        encoder.forward.net = torch.compile(net)
    else:
        encoder.forward = torch.compile(encoder.forward)
    return encoder


def to_host(out: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """Queue the copy to (pinned) host memory without waiting for it: while the CPU checks
    and writes batch i, the GPU already computes batch i+1."""
    if not out.is_cuda:
        return out, None
    host = out.to("cpu", non_blocking=True)
    done = torch.cuda.Event()
    done.record()
    return host, done
