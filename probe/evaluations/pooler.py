"""Grids of probe heads held in one module, so that each batch is read once for all of them.

A grid of G heads (one per (lr, weight decay) point) keeps its parameters stacked along a
leading axis of length G; one forward maps a batch shared by every head to (G, B, K) logits.
Every head starts from the same initial weights (one seeded draw, repeated G times), so the
heads differ only by their optimisation settings and a head trained alone with the same
seed equals its copy trained in the grid (`tests/test_attentive.py`).

- `AttentiveHeads`: V-JEPA 2's `AttentivePooler` (one cross-attention block: learned
  queries, LayerNorm, multi-head cross-attention without an output projection, a residual,
  then LayerNorm + MLP, another residual) followed by `AttentiveClassifier`'s linear layer
  (facebookresearch/vjepa2 @ c2963a4, `src/models/attentive_pooler.py` lines 16-137 and
  `src/models/utils/modules.py` lines 72-88 and 571-615). Several queries are averaged before
  the classifier, as AIM's `average_pool` does (V-JEPA 2's classifier takes one).
- `AimHeads`: AIM's `AttentionPoolingClassifier` (apple/ml-aim @ bd9e068,
  `aim-v1/aim/v1/torch/layers.py` lines 343-394): a BatchNorm without affine over the tokens,
  the learned query as it is (no projection), keys and values without bias, average over the
  queries, a linear layer without bias.
- `LinearHeads`: `torch.nn.Linear(D, K)`, initialised as torch does (CLIP_benchmark's
  `torch.manual_seed(seed); torch.nn.Linear(...)`, `clip_benchmark/metrics/linear_probe.py`
  lines 60-61, gives the same weights).

How the attentive heads are exact and cheap. With queries that do not depend on the input,
a head's attention logits are `xhat @ u` with `xhat` the token's LayerNorm *without* its
affine (shared by every head) and `u = scale * gamma * W_k^T q` (per head, per step, not per
image); the key bias and the LayerNorm's shift add a constant over tokens, which the softmax
removes. The attention output is `W_v (gamma * sum_t a_t xhat_t + beta) + b_v`, since the
weights sum to one. So no head projects every token to keys and values (the T x D x 2D
product that dominates one V-JEPA 2 head): the cost per head and image is the attention
itself (T x D per query and attention head) plus the D x D value projection and the MLP on
the pooled query. It is the same function as V-JEPA 2's up to float rounding.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

INIT_STD = 0.02  # attentive_pooler.py line 27 (init_std) and AIM's `* 0.02` (layers.py 362)
LN_EPS = 1e-5  # torch.nn.LayerNorm's default (attentive_pooler.py line 26: norm_layer)
BN_EPS = 1e-6  # AIM: nn.BatchNorm1d(dim, affine=False, eps=1e-6) (layers.py 365)


def _linear_init(out: int, inp: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`torch.nn.Linear(inp, out)`'s own initialisation, drawn from `gen`."""
    w = torch.empty(out, inp)
    nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=gen)
    bound = 1 / math.sqrt(inp)
    b = torch.empty(out).uniform_(-bound, bound, generator=gen)
    return w, b


def _normal(*shape: int, gen: torch.Generator) -> torch.Tensor:
    """V-JEPA 2's `trunc_normal_(t, std=0.02)` (bounds -2, 2: absolute, so 100 std)."""
    return nn.init.trunc_normal_(torch.empty(*shape), std=INIT_STD, generator=gen)


class GridHeads(nn.Module):
    """G heads with stacked parameters; subclasses define `forward` (x -> (G, B, K))."""

    def _stack(self, grid: int, params: dict[str, torch.Tensor]) -> None:
        self.grid = grid
        for name, value in params.items():
            self.register_parameter(name, nn.Parameter(value.repeat(grid, *[1] * value.ndim)))

    def head(self, g: int) -> dict[str, np.ndarray]:
        """Head g's parameters (and buffers), float32 numpy, by name: what is saved."""
        out = {k: v[g].detach().float().cpu().numpy() for k, v in self.named_parameters()}
        out.update({k: v.detach().float().cpu().numpy() for k, v in self.named_buffers()})
        return out

    def keep(self, points: list[int]) -> GridHeads:
        """A grid of the heads `points` only (their trained weights, the shared buffers)."""
        new = copy.deepcopy(self)
        new.grid = len(points)
        idx = torch.as_tensor(points, device=next(self.parameters()).device)
        for name, p in self.named_parameters():
            setattr(new, name, nn.Parameter(p.detach()[idx].clone()))
        return new


class LinearHeads(GridHeads):
    """G linear classifiers on pooled (N x D) features."""

    def __init__(self, *, grid: int, dim: int, num_classes: int, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(int(seed))
        w, b = _linear_init(num_classes, dim, gen)
        self._stack(grid, {"coef": w, "intercept": b})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bd,gkd->gbk", x, self.coef) + self.intercept[:, None]


def _attend(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """sum_t softmax_t(x_t . u_m) x_t for every row m of u: (B, T, D), (M, D) -> (B, M, D)."""
    B, T, D = x.shape
    logits = (x.reshape(B * T, D) @ u.T).reshape(B, T, -1)
    return torch.bmm(logits.softmax(dim=1).transpose(1, 2).to(x.dtype), x)


class AttentiveHeads(GridHeads):
    """G copies of V-JEPA 2's AttentivePooler (depth 1, complete block) + linear classifier."""

    def __init__(self, *, grid: int, dim: int, num_classes: int, seed: int, queries: int = 1,
                 heads: int | None = None, mlp_ratio: float = 4.0) -> None:  # fmt: skip
        super().__init__()
        self.dim, self.queries = dim, queries
        self.heads = heads or dim // 64
        hidden = int(dim * mlp_ratio)  # modules.py line 608: int(dim * mlp_ratio)
        gen = torch.Generator().manual_seed(int(seed))
        # attentive_pooler.py 61-63 and 78-85: trunc normal (std 0.02) weights, zero biases,
        # LayerNorm weight 1 and bias 0, then fc2's weight divided by sqrt(2 * 1) (lines 65-76)
        params = {
            "query": _normal(queries, dim, gen=gen),
            "norm1_weight": torch.ones(dim), "norm1_bias": torch.zeros(dim),
            "q_weight": _normal(dim, dim, gen=gen), "q_bias": torch.zeros(dim),
            "kv_weight": _normal(2 * dim, dim, gen=gen), "kv_bias": torch.zeros(2 * dim),
            "norm2_weight": torch.ones(dim), "norm2_bias": torch.zeros(dim),
            "fc1_weight": _normal(hidden, dim, gen=gen), "fc1_bias": torch.zeros(hidden),
            "fc2_weight": _normal(dim, hidden, gen=gen) / math.sqrt(2.0),
            "fc2_bias": torch.zeros(dim),
        }  # fmt: skip
        # AttentiveClassifier.linear (line 132) is outside the pooler's init: torch's default
        params["linear_weight"], params["linear_bias"] = _linear_init(num_classes, dim, gen)
        self._stack(grid, params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, D = x.shape
        G, Q, H = self.grid, self.queries, self.heads
        xhat = F.layer_norm(x, (D,), eps=LN_EPS)  # norm1 without its affine: shared
        q = torch.einsum("gqd,ged->gqe", self.query, self.q_weight) + self.q_bias[:, None]
        k_w, v_w = self.kv_weight[:, :D], self.kv_weight[:, D:]
        u = torch.einsum("gqhe,ghed->gqhd", q.reshape(G, Q, H, D // H),
                         k_w.reshape(G, H, D // H, D))  # fmt: skip
        u = u * (D // H) ** -0.5 * self.norm1_weight[:, None, None]
        z = _attend(xhat, u.reshape(G * Q * H, D)).reshape(B, G, Q, H, D)
        z = z * self.norm1_weight[:, None, None] + self.norm1_bias[:, None, None]
        out = torch.einsum("bgqhd,ghed->bgqhe", z, v_w.reshape(G, H, D // H, D))
        h = self.query + out.reshape(B, G, Q, D) + self.kv_bias[:, None, D:]
        y = F.layer_norm(h, (D,), eps=LN_EPS) * self.norm2_weight[:, None]
        y = y + self.norm2_bias[:, None]
        y = F.gelu(torch.einsum("bgqd,ged->bgqe", y, self.fc1_weight) + self.fc1_bias[:, None])
        h = h + torch.einsum("bgqe,gde->bgqd", y, self.fc2_weight) + self.fc2_bias[:, None]
        pooled = h.mean(dim=2)  # one query: the query itself (V-JEPA 2's squeeze(1))
        return torch.einsum("bgd,gkd->gbk", pooled, self.linear_weight) + self.linear_bias[:, None]


class AimHeads(GridHeads):
    """G copies of AIM's AttentionPoolingClassifier (its defaults: batch norm, no biases)."""

    def __init__(self, *, grid: int, dim: int, num_classes: int, seed: int, queries: int = 1,
                 heads: int | None = None, **_: Any) -> None:  # fmt: skip
        super().__init__()
        self.dim, self.queries = dim, queries
        self.heads = heads or dim // 64
        gen = torch.Generator().manual_seed(int(seed))
        k_w, _ = _linear_init(dim, dim, gen)  # layers.py 360-363: nn.Linear defaults
        v_w, _ = _linear_init(dim, dim, gen)
        query = torch.randn(queries, dim, generator=gen) * INIT_STD  # layers.py 362
        lin_w, _ = _linear_init(num_classes, dim, gen)
        self._stack(grid, {"query": query, "k_weight": k_w, "v_weight": v_w,
                           "linear_weight": lin_w})  # fmt: skip
        # the batch statistics depend on the data only: one running mean and variance serve
        # every head (nn.BatchNorm1d(affine=False): momentum 0.1, unbiased running variance)
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        G, Q, H = self.grid, self.queries, self.heads
        flat = x.reshape(B * T, D)
        xbn = F.batch_norm(flat, self.running_mean, self.running_var, training=self.training,
                           momentum=0.1, eps=BN_EPS).reshape(B, T, D)  # fmt: skip
        u = torch.einsum("gqhe,ghed->gqhd", self.query.reshape(G, Q, H, D // H),
                         self.k_weight.reshape(G, H, D // H, D)) * (D // H) ** -0.5  # fmt: skip
        z = _attend(xbn, u.reshape(G * Q * H, D)).reshape(B, G, Q, H, D)
        out = torch.einsum("bgqhd,ghed->bgqhe", z, self.v_weight.reshape(G, H, D // H, D))
        pooled = out.reshape(B, G, Q, D).mean(dim=2)  # layers.py 391: average_pool
        return torch.einsum("bgd,gkd->gbk", pooled, self.linear_weight)


POOLERS = {"vjepa2": AttentiveHeads, "aim": AimHeads}
