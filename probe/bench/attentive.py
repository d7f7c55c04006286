"""The attentive probe's bench (part of `python -m probe.bench evals`): 20 heads trained
together against one head trained alone, side by side in one run, and whether together
equals alone.

The problem is a CIFAR-100-shaped token cache subsample held in memory as float16 (by
default 5,000 rows x 64 tokens x 384 wide, 100 classes: ViT-S/16 tokens pooled to an 8 x 8
grid), class-conditional Gaussian tokens. Three trainings of `--epochs` epochs over it:

- **together**: V-JEPA 2's default grid, 4 lrs x 5 weight decays, one `AttentiveHeads` of 20;
- **alone (ours)**: one head, the same code (`AttentiveHeads` of 1);
- **alone (V-JEPA 2's module)**: one head written as the source's forward reads (keys and
  values projected for every token, `F.scaled_dot_product_attention`) with `torch.optim.AdamW`:
  one head trained the usual way.

Then heads 0, 9 and 19 of the grid are trained alone with the same seed and compared with
their copies trained together (largest absolute difference of any parameter). On a GPU the
same runs take `--rows`, `--tokens`, `--dim`, `--classes` (gpu_check.sh: an ImageNet-shaped
subsample, 257 tokens x 1,024 wide, 1,000 classes).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from probe.evaluations.attentive import LRS, WDS
from probe.evaluations.pooler import AttentiveHeads
from probe.evaluations.trainer import Schedule, Source, autocast, batches, buffer_rows, train

# together against alone: float32 rounding on a CPU; bf16 autocast on a GPU rounds each
# product to 8 bits of mantissa, and the grid's batched products round in another order
TOLERANCE = {False: 1e-4, True: 5e-2}


def token_problem(*, rows: int, tokens: int, dim: int, classes: int, seed: int = 0) -> tuple:
    """Class-conditional float16 tokens: each row's tokens share its class mean plus noise."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((classes, dim), dtype=np.float32) * 0.3
    y = rng.integers(0, classes, rows)
    X = np.empty((rows, tokens, dim), np.float16)
    for s in range(0, rows, 1024):
        noise = rng.standard_normal((min(1024, rows - s), tokens, dim), dtype=np.float32)
        X[s : s + 1024] = means[y[s : s + 1024], None] + noise
    return X, y


class PlainHead(nn.Module):
    """One V-JEPA 2 AttentivePooler + linear head written as its source reads (modules.py
    571-615, attentive_pooler.py 91-100 and 134-137): every token projected to keys and
    values. The bench's "one head trained the usual way"."""

    def __init__(self, start: AttentiveHeads) -> None:
        super().__init__()
        self.heads = start.heads
        for name, p in start.named_parameters():
            self.register_parameter(name, nn.Parameter(p.detach()[0].clone()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        H = self.heads
        q0 = self.query.expand(B, -1, -1)
        x = F.layer_norm(x, (C,), self.norm1_weight, self.norm1_bias)
        q = F.linear(q0, self.q_weight, self.q_bias).reshape(B, -1, H, C // H).transpose(1, 2)
        kv = F.linear(x, self.kv_weight, self.kv_bias).reshape(B, N, 2, H, C // H)
        k, v = kv.permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, -1, C)
        h = q0 + y
        m = F.layer_norm(h, (C,), self.norm2_weight, self.norm2_bias)
        h = h + F.linear(F.gelu(F.linear(m, self.fc1_weight, self.fc1_bias)), self.fc2_weight,
                         self.fc2_bias)  # fmt: skip
        return F.linear(h.mean(1), self.linear_weight, self.linear_bias)


def train_plain(head: PlainHead, X: np.ndarray, y: np.ndarray, *, lr: float, wd: float,
                schedule: Schedule, batch: int, seed: int, device: str) -> None:  # fmt: skip
    head = head.to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=wd)
    rng = np.random.Generator(np.random.PCG64(seed))
    per_epoch, source = math.ceil(len(y) / batch), Source(X)
    ref, step = torch.tensor([lr], dtype=torch.float64), 0
    for _ in range(schedule.epochs):
        for xb, yb in batches(source, y, batch=batch, rng=rng,
                              buffer=buffer_rows(source, 2048)):  # fmt: skip
            opt.param_groups[0]["lr"] = float(schedule.lr(step, ref, steps_per_epoch=per_epoch))
            with autocast(device):
                logits = head(torch.from_numpy(xb).to(device=device, dtype=torch.float32))
            F.cross_entropy(logits.float(), torch.from_numpy(yb).to(device)).backward()
            opt.step()
            opt.zero_grad()
            step += 1


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_attentive(args: Any, device: str) -> dict[str, Any]:
    gpu = device.startswith("cuda")
    rows = args.rows or (50_000 if gpu else 5_000)
    X, y = token_problem(rows=rows, tokens=args.tokens, dim=args.token_dim,
                         classes=args.token_classes)  # fmt: skip
    lrs = [lr for lr in LRS for _ in WDS]
    wds = [wd for _ in LRS for wd in WDS]
    schedule = Schedule(epochs=args.epochs, warmup_epochs=0, start_lr=None)
    opts = {"schedule": schedule, "batch": args.batch, "seed": 0, "device": device}
    heads = args.token_dim // 64

    def make(grid: int) -> AttentiveHeads:
        return AttentiveHeads(grid=grid, dim=args.token_dim, num_classes=args.token_classes,
                              seed=0, heads=heads)  # fmt: skip

    def timed(fn) -> tuple[float, Any]:
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        return time.perf_counter() - start, out

    torch.optim.AdamW([nn.Parameter(torch.zeros(1))])  # its first use imports for seconds
    t_together, together = timed(lambda: train(make(20), Source(X), y, lrs=lrs, wds=wds, **opts))
    t_alone, _ = timed(lambda: train(make(1), Source(X), y, lrs=lrs[:1], wds=wds[:1], **opts))
    t_plain, _ = timed(lambda: train_plain(PlainHead(make(1)), X, y, lr=lrs[0], wd=wds[0],
                                           schedule=schedule, batch=args.batch, seed=0,
                                           device=device))  # fmt: skip
    diffs = {}
    for g in (0, 9, 19):
        alone = train(make(1), Source(X), y, lrs=[lrs[g]], wds=[wds[g]], **opts).head(0)
        diffs[g] = max(float(np.abs(together.head(g)[k] - v).max()) for k, v in alone.items())
    return {"shape": f"{rows:,} x {args.tokens} tokens x {args.token_dim}, "
                     f"{args.token_classes} classes (float16)",
            "epochs": args.epochs, "batch": args.batch, "heads_per_probe": heads,
            "together_s": round(t_together, 2), "alone_s": round(t_alone, 2),
            "alone_plain_s": round(t_plain, 2),
            "ratio_vs_alone": round(t_together / t_alone, 2),
            "ratio_vs_plain": round(t_together / t_plain, 2),
            "max_abs_diff": {str(g): d for g, d in diffs.items()},
            "tolerance": TOLERANCE[gpu],
            "equal": all(d < TOLERANCE[gpu] for d in diffs.values()),
            "threads": torch.get_num_threads()}  # fmt: skip


def report(a: dict[str, Any], device: str) -> str:
    return (
        f"attentive probe on {device} ({a['threads']} threads), {a['shape']}, {a['epochs']} "
        f"epoch(s), batch {a['batch']}:\n"
        "| training | time | 20 together / this |\n|---|---|---|\n"
        f"| 20 heads together (4 lrs x 5 wds) | {a['together_s']:.1f} s | 1.00 |\n"
        f"| one head alone, same code | {a['alone_s']:.1f} s | {a['ratio_vs_alone']:.2f} |\n"
        f"| one head alone, V-JEPA 2's module | {a['alone_plain_s']:.1f} s | "
        f"{a['ratio_vs_plain']:.2f} |\n"
        f"together equals alone (heads 0, 9, 19; largest |difference| of any parameter: "
        f"{', '.join(f'{d:.1e}' for d in a['max_abs_diff'].values())}; tolerance "
        f"{a['tolerance']:g}): {a['equal']}"
    )
