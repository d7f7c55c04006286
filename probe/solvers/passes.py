"""One pass over the resident features: every pending head's loss and gradient.

Points come in the working basis (`resident.Problem`), divided by each head's scaling; each
is mapped to original coordinates (K x D x D) and the pass multiplies the features as they
are stored. float32 (and TF32) passes keep each head's float64 logits at its previous point
and multiply only the step, `logits = Z_prev + X (theta - theta_prev)^T`, so rounding scales
with the step rather than with the logits and the line search still sees true decreases
near the optimum. float64 passes convert one chunk of rows at a time: no float64 copy of X.
Every pass counts itself in `Counter` (passes over X and seconds, per precision).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch

from probe.solvers.base import chunk_rows
from probe.solvers.lbfgs import Eval, Point
from probe.solvers.resident import Problem

CACHE_BYTES = 2**31  # most memory the cached float64 logits of one pass may take
CURV_FLOOR = 1e-12  # the curvature a scaling assumes at least (confident predictions)
TINY = 1e-250  # below this a true-class probability is recomputed as log-sum-exp - logit


@dataclass
class Counter:
    """Passes over X (one pass: the logits matmul and the gradient matmul) and seconds,
    by precision; `certify` counts under "certificate"."""

    passes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    heads: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # evaluations
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, kind: str, *, heads: int, seconds: float) -> None:
        self.passes[kind] += 1
        self.heads[kind] += heads
        self.seconds[kind] += seconds


def caches_logits(p: Problem, *, heads: int, mode: str) -> bool:
    """Whether a pass keeps each head's float64 logits (low-precision modes, within
    CACHE_BYTES); the line search's noise floor depends on the same answer."""
    return mode != "float64" and p.n * p.k * heads * 8 <= CACHE_BYTES


def evaluate(
    p: Problem,
    thetas: list[Point],
    *,
    mode: str = "float32",
    scales: list[torch.Tensor] | None = None,
    states: list[dict] | None = None,
    chunk_bytes: int = 2**30,
    counter: Counter | None = None,
) -> list[Eval]:
    """Mean log-loss and gradient (working basis) for every head, sharing one chunked pass.

    `states` (one dict per head) receive `curv`, the mean softmax curvature at the point
    (what `Problem.scale` needs), and in float32/TF32 modes the head's cached logits.
    """
    start = time.perf_counter()
    h, k, d = len(thetas), p.k, p.dim
    if scales is not None:
        thetas = [t * sc for t, sc in zip(thetas, scales, strict=True)]
    caches = states if caches_logits(p, heads=h, mode=mode) else None
    steps = thetas if caches is None else [
        t - c["theta"] if "Z" in c else t for t, c in zip(thetas, caches, strict=True)
    ]  # fmt: skip
    mm = torch.float64 if mode == "float64" else torch.float32
    # float32 passes: the changes of basis in float32 too (their rounding is below the
    # pass's; measured: docs/solvers.md, "Peers and small problems")
    orig = [torch.cat([w, b[:, None]], 1) for w, b in (p.from_work(t, dtype=mm) for t in steps)]
    W = torch.cat([t[:, :d] for t in orig]).to(mm)  # (h*k, d)
    b = torch.cat([t[:, d] for t in orig])  # (h*k,) in the pass precision
    prev = _previous_logits(p, caches) if caches is not None else None
    per_row = h * k * 8 * 3 + (d * 8 if mm == torch.float64 else 0)
    rows = chunk_rows(p.n, per_row, chunk_bytes=chunk_bytes, device=str(p.device))
    loss = torch.zeros(h, dtype=torch.float64, device=p.device)
    gw = torch.zeros(h * k, d, dtype=torch.float64, device=p.device)
    gb = torch.zeros(h * k, dtype=torch.float64, device=p.device)
    sq = torch.zeros(h, dtype=torch.float64, device=p.device)  # sum of squared probas
    b32 = b.to(torch.float32)
    for s in range(0, p.n, rows):
        xc, yc = p.X[s : s + rows].to(mm), p.y[s : s + rows]
        if mm == torch.float64:
            logits = torch.addmm(b, xc, W.T)
        elif prev is None:
            logits = (xc @ W.T).to(torch.float64).add_(b)
        else:  # the step in float32 (its intercept too), added to the cached logits in place
            logits = prev[s : s + rows].add_(torch.addmm(b32, xc, W.T))
        logits = logits.view(len(yc), h, k)
        idx = yc.view(-1, 1, 1).expand(-1, h, 1)
        resid = torch.softmax(logits, 2)  # a new buffer: the cached logits survive
        loss += _nll(logits, resid, idx).sum((0, 2))
        sq += (resid * resid).sum((0, 2))
        resid.scatter_add_(2, idx, torch.full_like(idx, -1, dtype=torch.float64))
        resid = resid.view(len(yc), h * k)
        gb += resid.sum(0)
        gw += (resid.to(mm).T @ xc).to(torch.float64)
    out = []
    for j in range(h):
        if states is not None:  # mean over rows of sum_c p_c (1 - p_c), per class
            states[j]["curv"] = max((1.0 - float(sq[j]) / p.n) / k, CURV_FLOOR)
        if caches is not None:
            caches[j].update(theta=thetas[j], Z=prev[:, j * k : (j + 1) * k])
        g = torch.cat([gw[j * k : (j + 1) * k], gb[j * k : (j + 1) * k, None]], 1) / p.n
        g = p.grad_to_work(g, dtype=mm)
        out.append((float(loss[j]) / p.n, g if scales is None else g * scales[j]))
    if counter is not None:
        counter.add(mode, heads=h, seconds=time.perf_counter() - start)
    return out


def _nll(logits: torch.Tensor, proba: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """-log p(true class) per row and head: from the float64 softmax (as exact as
    log-sum-exp minus the true logit), except where p underflows, which takes that form."""
    p_true = proba.gather(2, idx)
    nll = p_true.log().neg_()
    tiny = p_true < TINY
    if bool(tiny.any()):
        exact = torch.logsumexp(logits, 2, keepdim=True) - logits.gather(2, idx)
        nll = torch.where(tiny, exact, nll)
    return nll


def _previous_logits(p: Problem, caches: list[dict]) -> torch.Tensor:
    """(N, heads * K) float64 logits at each head's previous point (zeros before the first).

    A single head's own cache (or, at its first pass, fresh zeros) is returned as is and
    updated in place by the pass: one N x K buffer, not a zero block and its copy. Stacked
    heads get one new buffer with each head's cache copied in."""
    if len(caches) == 1:
        if "Z" in caches[0]:
            return caches[0]["Z"]
        return torch.zeros(p.n, p.k, dtype=torch.float64, device=p.X.device)
    out = torch.zeros(p.n, p.k * len(caches), dtype=torch.float64, device=p.X.device)
    for j, c in enumerate(caches):
        if "Z" in c:
            out[:, j * p.k : (j + 1) * p.k] = c["Z"]
    return out
