"""Transcriptions of the sources `eval=attentive`, `eval=sgd_linear` and protocol=clip_benchmark
follow, copied from their code as it reads (only imports, logging and distributed wrappers
left out), to test ours against:

- facebookresearch/vjepa2 @ c2963a47433ecca0ad4f06ec28bcfa8cb5b5cefb: `src/models/utils/
  modules.py` 72-88 (MLP), 571-615 (CrossAttention, CrossAttentionBlock),
  `src/models/attentive_pooler.py` 91-100 and 134-137 (the forwards, depth 1), and
  `evals/image_classification_frozen/eval.py` 429-454 (WarmupCosineLRSchedule).
- apple/ml-aim @ bd9e06893f3ad68bda56b34ac2158fda2680b7fc: `aim-v1/aim/v1/torch/layers.py`
  343-394 (AttentionPoolingClassifier).
- LAION-AI/CLIP_benchmark @ 48de38c1689fa6d8b4dd53e3370c669c3bb18117:
  `clip_benchmark/metrics/linear_probe.py` 13-32 (cosine_lr), 59-107 (train, on the CPU),
  128-139 (find_peak) and 266-278 (the weight-decay search).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# -- V-JEPA 2 ---------------------------------------------------------------------------------
class MLP(nn.Module):
    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU,
                 drop=0.0):  # fmt: skip
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        x = self.fc1(x)
        x = self.act(x)
        x = self.drop(x)
        x = self.fc2(x)
        x = self.drop(x)
        return x


class CrossAttention(nn.Module):
    def __init__(self, dim, num_heads=12, qkv_bias=False, use_sdpa=True):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, int(dim * 2), bias=qkv_bias)
        self.use_sdpa = use_sdpa

    def forward(self, q, x):
        B, n, C = q.shape
        q = self.q(q).reshape(B, n, self.num_heads, C // self.num_heads).permute(0, 2, 1, 3)
        B, N, C = x.shape
        kv = self.kv(x).reshape(B, N, 2, self.num_heads, C // self.num_heads)
        kv = kv.permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        if self.use_sdpa:
            q = F.scaled_dot_product_attention(q, k, v)
        else:
            xattn = (q @ k.transpose(-2, -1)) * self.scale
            xattn = xattn.softmax(dim=-1)
            q = xattn @ v
        q = q.transpose(1, 2).reshape(B, n, C)
        return q


class CrossAttentionBlock(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=False, act_layer=nn.GELU,
                 norm_layer=nn.LayerNorm):  # fmt: skip
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.xattn = CrossAttention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm2 = norm_layer(dim)
        mlp_hidden_dim = int(dim * mlp_ratio)
        self.mlp = MLP(in_features=dim, hidden_features=mlp_hidden_dim, act_layer=act_layer)

    def forward(self, q, x):
        y = self.xattn(q, self.norm1(x))
        q = q + y
        q = q + self.mlp(self.norm2(q))
        return q


class AttentiveClassifier(nn.Module):
    """AttentivePooler (depth 1, complete block, qkv_bias=True) + the linear layer; with
    several queries their mean feeds the linear layer (our documented alternative)."""

    def __init__(self, embed_dim, num_heads, num_classes, num_queries=1, mlp_ratio=4.0):
        super().__init__()
        self.query_tokens = nn.Parameter(torch.zeros(1, num_queries, embed_dim))
        self.cross_attention_block = CrossAttentionBlock(
            dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=True
        )
        self.linear = nn.Linear(embed_dim, num_classes, bias=True)

    def forward(self, x):
        q = self.query_tokens.repeat(len(x), 1, 1)
        q = self.cross_attention_block(q, x)
        return self.linear(q.mean(1))  # one query: q.squeeze(1)

    def load_ours(self, w: dict[str, np.ndarray]) -> AttentiveClassifier:
        """Our head's arrays (`AttentiveHeads.head(g)`) under the source's parameter names."""
        names = {"query": "query_tokens", "linear_weight": "linear.weight",
                 "linear_bias": "linear.bias"}  # fmt: skip
        for ours in ("norm1", "norm2"):
            for part in ("weight", "bias"):
                names[f"{ours}_{part}"] = f"cross_attention_block.{ours}.{part}"
        for ours, theirs in (("q", "xattn.q"), ("kv", "xattn.kv"), ("fc1", "mlp.fc1"),
                             ("fc2", "mlp.fc2")):  # fmt: skip
            for part in ("weight", "bias"):
                names[f"{ours}_{part}"] = f"cross_attention_block.{theirs}.{part}"
        state = {names[k]: torch.from_numpy(v) for k, v in w.items()}
        state["query_tokens"] = state["query_tokens"][None]
        self.load_state_dict(state)
        return self


class WarmupCosineLRSchedule:
    def __init__(self, optimizer, T_max, last_epoch=-1):
        self.optimizer = optimizer
        self.T_max = T_max
        self._step = 0.0

    def step(self):
        self._step += 1
        for group in self.optimizer.param_groups:
            ref_lr = group.get("mc_ref_lr")
            final_lr = group.get("mc_final_lr")
            start_lr = group.get("mc_start_lr")
            warmup_steps = group.get("mc_warmup_steps")
            T_max = self.T_max - warmup_steps
            if self._step < warmup_steps:
                progress = float(self._step) / float(max(1, warmup_steps))
                new_lr = start_lr + progress * (ref_lr - start_lr)
            else:
                progress = float(self._step - warmup_steps) / float(max(1, T_max))
                new_lr = max(
                    final_lr,
                    final_lr + (ref_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress)),
                )
            group["lr"] = new_lr


# -- AIM --------------------------------------------------------------------------------------
class AttentionPoolingClassifier(nn.Module):
    def __init__(self, dim, out_features, num_heads=12, num_queries=1, use_batch_norm=True,
                 qkv_bias=False, linear_bias=False, average_pool=True):  # fmt: skip
        super().__init__()
        self.num_heads = num_heads
        self.num_queries = num_queries
        self.average_pool = average_pool
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.cls_token = nn.Parameter(torch.randn(1, num_queries, dim) * 0.02)
        self.linear = nn.Linear(dim, out_features, bias=linear_bias)
        self.bn = nn.BatchNorm1d(dim, affine=False, eps=1e-6) if use_batch_norm else nn.Identity()

    def forward(self, x):
        B, N, C = x.shape
        x = self.bn(x.transpose(-2, -1)).transpose(-2, -1)
        cls_token = self.cls_token.expand(B, -1, -1)
        q = cls_token.reshape(B, self.num_queries, self.num_heads, C // self.num_heads)
        q = q.permute(0, 2, 1, 3)
        k = self.k(x).reshape(B, N, self.num_heads, C // self.num_heads).permute(0, 2, 1, 3)
        v = self.v(x).reshape(B, N, self.num_heads, C // self.num_heads).permute(0, 2, 1, 3)
        x_cls = F.scaled_dot_product_attention(q, k, v)
        x_cls = x_cls.transpose(1, 2).reshape(B, self.num_queries, C)
        x_cls = x_cls.mean(dim=1) if self.average_pool else x_cls
        out = self.linear(x_cls)
        return out


# -- CLIP_benchmark ---------------------------------------------------------------------------
def assign_learning_rate(param_group, new_lr):
    param_group["lr"] = new_lr


def _warmup_lr(base_lr, warmup_length, step):
    return base_lr * (step + 1) / warmup_length


def cosine_lr(optimizer, base_lrs, warmup_length, steps):
    if not isinstance(base_lrs, list):
        base_lrs = [base_lrs for _ in optimizer.param_groups]
    assert len(base_lrs) == len(optimizer.param_groups)

    def _lr_adjuster(step):
        for param_group, base_lr in zip(optimizer.param_groups, base_lrs, strict=True):
            if step < warmup_length:
                lr = _warmup_lr(base_lr, warmup_length, step)
            else:
                e = step - warmup_length
                es = steps - warmup_length
                lr = 0.5 * (1 + np.cos(np.pi * e / es)) * base_lr
            assign_learning_rate(param_group, lr)

    return _lr_adjuster


def clip_benchmark_train(batches, input_shape, output_shape, weight_decay, lr, epochs, seed):
    """`train` on the CPU, float32 (amp off), `batches`: the epochs' (x, y) lists."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(input_shape, output_shape)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    criterion = torch.nn.CrossEntropyLoss()
    len_loader = len(batches[0])
    scheduler = cosine_lr(optimizer, lr, 0.0, epochs * len_loader)
    for epoch in range(epochs):
        for i, (x, y) in enumerate(batches[epoch]):
            step = i + epoch * len_loader
            scheduler(step)
            optimizer.zero_grad()
            pred = model(x)
            loss = criterion(pred, y)
            loss.backward()
            optimizer.step()
    return model


def find_peak(wd_list, idxs, accuracy_of):
    best_wd_idx, max_acc = 0, 0
    for idx in idxs:
        acc1 = accuracy_of(idx)
        if max_acc < acc1:
            best_wd_idx, max_acc = idx, acc1
    return best_wd_idx


def clip_benchmark_search(accuracy_of):
    """LP 269-278: the chosen index of wd_list, given each index's val accuracy."""
    wd_list = np.logspace(-6, 2, num=97).tolist()
    wd_list_init = np.logspace(-6, 2, num=7).tolist()
    wd_init_idx = [i for i, val in enumerate(wd_list) if val in wd_list_init]
    peak_idx = find_peak(wd_list, wd_init_idx, accuracy_of)
    step_span = 8
    while step_span > 0:
        left, right = max(peak_idx - step_span, 0), min(peak_idx + step_span, len(wd_list) - 1)
        peak_idx = find_peak(wd_list, [left, peak_idx, right], accuracy_of)
        step_span //= 2
    return peak_idx
