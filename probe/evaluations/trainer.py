"""Training a grid of heads together: AdamW per head, warmup + cosine, shuffled chunked reads.

One pass over the data serves every head of the grid (`pooler.GridHeads`): each batch is
read once, and the summed loss of the heads gives each head the gradient of its own mean
cross-entropy (their parameters are disjoint). AdamW is torch's (`torch.optim.AdamW`:
decoupled decay `p *= 1 - lr * wd`, betas 0.9 / 0.999, eps 1e-8, bias-corrected moments)
with a learning rate and a weight decay per head.

The schedule is V-JEPA 2's `WarmupCosineLRSchedule` (facebookresearch/vjepa2 @ c2963a4,
`evals/image_classification_frozen/eval.py` lines 407-454): `warmup_steps =
int(warmup_epochs * steps_per_epoch)`, a linear ramp from `start_lr`, then a cosine from
each head's lr to `final_lr`; its scheduler is stepped before each iteration, so the first
iteration uses step 1 (`first_step: 1`). CLIP_benchmark's `cosine_lr` (no warmup, final 0,
`clip_benchmark/metrics/linear_probe.py` lines 16-32 and 81) is the same curve from step 0
(`first_step: 0`). The weight decay is constant: V-JEPA 2's `CosineWDSchedule` goes from
`weight_decay` to `final_weight_decay`, equal in every entry of its configs.

Rows are read in contiguous chunks (plain slices of the array, memory map or row
selection) in a seeded random order, a bounded buffer of chunks at a time, and shuffled
within the buffer: peak memory is the buffer (`buffer_mb`), whatever the split's size; a
split that fits in the buffer is shuffled whole, as a data loader would. Every epoch has
ceil(N / batch) steps (the last batch partial, as `drop_last=False`). A run is seeded:
the heads' initial weights and the batch order come from `seed`, so the same seed gives the
same heads on the same device.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from probe.core import preempt
from probe.evaluations.pooler import GridHeads

BETAS = (0.9, 0.999)  # torch.optim.AdamW's defaults, as both sources leave them
EPS = 1e-8
CHUNKS_PER_BUFFER = 8  # a buffer holds this many chunks: the finer, the better shuffled


@dataclass(frozen=True)
class Schedule:
    """Learning rate per step: linear warmup from `start_lr`, cosine to `final_lr`."""

    epochs: int
    warmup_epochs: float = 0.0
    start_lr: float | None = None  # None: each head's own lr (no ramp)
    final_lr: float = 0.0
    first_step: int = 1

    def lr(self, step: int, ref: torch.Tensor, *, steps_per_epoch: int) -> torch.Tensor:
        """The lr of each head at 0-based iteration `step` (V-JEPA 2's eval.py 436-454)."""
        s = step + self.first_step
        warmup = int(self.warmup_epochs * steps_per_epoch)
        total = int(self.epochs * steps_per_epoch) - warmup
        if s < warmup:
            start = ref if self.start_lr is None else torch.full_like(ref, self.start_lr)
            return start + s / max(1, warmup) * (ref - start)
        progress = (s - warmup) / max(1, total)
        cos = self.final_lr + (ref - self.final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return torch.clamp(cos, min=self.final_lr)


class GridAdamW:
    """torch.optim.AdamW's update with a learning rate and weight decay per head."""

    def __init__(self, params: Sequence[torch.nn.Parameter], *, wds: torch.Tensor) -> None:
        self.params = list(params)
        self.wds = wds
        self.state = [(torch.zeros_like(p), torch.zeros_like(p)) for p in self.params]
        self.t = 0

    @torch.no_grad()
    def step(self, lrs: torch.Tensor) -> None:
        self.t += 1
        b1, b2 = BETAS
        c1, c2 = 1 - b1**self.t, math.sqrt(1 - b2**self.t)
        for p, (m, v) in zip(self.params, self.state, strict=True):
            shape = (-1, *[1] * (p.ndim - 1))
            lr, wd = lrs.view(shape), self.wds.view(shape)
            p.mul_(1 - lr * wd)
            m.lerp_(p.grad, 1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            p.sub_(lr / c1 * m / (v.sqrt() / c2 + EPS))
            p.grad = None


class Source:
    """Rows of one or more arrays (train, then val) read by contiguous ranges."""

    def __init__(self, *parts: Any, skip_tokens: int = 0) -> None:
        self.parts = [p for p in parts if len(p)]
        self.skip = skip_tokens
        self.offsets = np.cumsum([0, *(len(p) for p in self.parts)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def read(self, start: int, stop: int) -> np.ndarray:
        blocks = []
        for i, part in enumerate(self.parts):
            a, b = max(start, self.offsets[i]), min(stop, self.offsets[i + 1])
            if a < b:
                block = _rows(part, int(a - self.offsets[i]), int(b - self.offsets[i]))
                blocks.append(block[:, self.skip :] if self.skip else block)
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def _rows(part: Any, a: int, b: int) -> np.ndarray:
    """Rows [a, b) in memory: a row selection reads them (`Rows.read`); an array or a memory
    map is sliced and copied in its own dtype (float16 tokens stay float16 until the batch)."""
    return part.read(a, b) if hasattr(part, "read") else np.array(part[a:b])


def buffer_rows(source: Source, buffer_mb: float) -> int:
    row = source.read(0, 1)
    return max(1, int(buffer_mb * 2**20 // max(1, row.nbytes)))


def batches(
    source: Source, y: np.ndarray, *, batch: int, rng: np.random.Generator, buffer: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of shuffled batches: chunks in random order, `buffer` rows at a time,
    shuffled within; ceil(N / batch) batches, the last one partial."""
    n = len(source)
    chunk = n if n <= buffer else max(1, buffer // CHUNKS_PER_BUFFER)
    starts = np.arange(0, n, chunk)[rng.permutation(math.ceil(n / chunk))]
    per_buffer = max(1, buffer // chunk)
    carry_x, carry_y = None, None
    for i in range(0, len(starts), per_buffer):
        spans = [(int(s), min(int(s) + chunk, n)) for s in starts[i : i + per_buffer]]
        xs = np.concatenate([source.read(a, b) for a, b in spans])
        ys = np.concatenate([y[a:b] for a, b in spans])
        order = rng.permutation(len(ys))
        xs, ys = xs[order], ys[order]
        if carry_x is not None:
            xs, ys = np.concatenate([carry_x, xs]), np.concatenate([carry_y, ys])
        full = len(ys) // batch * batch
        for s in range(0, full, batch):
            yield xs[s : s + batch], ys[s : s + batch]
        carry_x, carry_y = (xs[full:], ys[full:]) if full < len(ys) else (None, None)
    if carry_x is not None:
        yield carry_x, carry_y


def autocast(device: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on a GPU; float32 (no autocast) on a CPU."""
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision(device: str) -> str:
    return "bfloat16 autocast" if device.startswith("cuda") else "float32"


def train(
    heads: GridHeads,
    source: Source,
    y: np.ndarray,
    *,
    lrs: Sequence[float],
    wds: Sequence[float],
    schedule: Schedule,
    batch: int,
    seed: int,
    device: str,
    buffer_mb: float = 2048,
    dtype: torch.dtype = torch.float32,
    on_epoch: Callable[[int], None] | None = None,
) -> GridHeads:
    """The heads trained for `schedule.epochs` epochs; head g at (lrs[g], wds[g])."""
    heads = heads.to(device=device, dtype=dtype).train()
    ref = torch.tensor(list(lrs), dtype=dtype, device=device)
    opt = GridAdamW(list(heads.parameters()),
                    wds=torch.tensor(list(wds), dtype=dtype, device=device))  # fmt: skip
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    per_epoch = math.ceil(len(y) / batch)
    rows = buffer_rows(source, buffer_mb)
    step = 0
    for epoch in range(schedule.epochs):
        for xb, yb in batches(source, y, batch=batch, rng=rng, buffer=rows):
            x = torch.from_numpy(xb).to(device=device, dtype=dtype)
            target = torch.from_numpy(np.asarray(yb, np.int64)).to(device)
            with autocast(device):
                logits = heads(x)
            G, B, K = logits.shape
            loss = F.cross_entropy(logits.float().reshape(G * B, K), target.repeat(G),
                                   reduction="sum") / B  # fmt: skip
            loss.backward()
            opt.step(schedule.lr(step, ref, steps_per_epoch=per_epoch))
            step += 1
        preempt.checkpoint(f"stopped while training the heads, after epoch {epoch + 1}")
        if on_epoch is not None:
            on_epoch(epoch)
    return heads


@torch.no_grad()
def predict(
    heads: GridHeads, source: Source, *, batch: int, device: str, top: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """(G, N) predicted classes, in row order, and with `top` > 0 the (G, N, top) best classes
    (ties to the smaller index; the prediction first, as `np.argmax` takes it)."""
    heads = heads.to(device=device, dtype=dtype).eval()
    preds, tops = [], []
    for s in range(0, len(source), batch):
        x = torch.from_numpy(source.read(s, s + batch)).to(device=device, dtype=dtype)
        with autocast(device):
            scores = heads(x).float().cpu().numpy()
        preds.append(scores.argmax(axis=-1))  # the first maximum
        if top:  # stable: ties to the smaller index, so column 0 is the argmax
            tops.append(np.argsort(-scores, axis=-1, kind="stable")[..., :top])
    pred = np.concatenate(preds, axis=1)
    return pred, (np.concatenate(tops, axis=1) if top else None)
