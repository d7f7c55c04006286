"""The weighted k-NN probe (dinov2's protocol): cosine neighbours vote with exp(sim / T).

Features are L2-normalised (`unit_rows`, at any finite magnitude). k is chosen as the linear
probe chooses C, never on test: among `eval.k`, the best score on the protocol's val split
with the train split as the bank (ties: the smaller k). The reported score is then the test
score at that k with the bank train + val (the rows the final linear fit uses), and its
interval treats k as fixed, which it is with respect to test. Each query's `max(k)` most
similar bank rows are found once; for every k the first k of them vote for their class with
weight `exp(similarity / T)` and the class with the largest summed weight wins (ties: the
lowest class index, as argmax takes it). dinov2's `KnnModule` takes a softmax over the top
similarities divided by T, the same weights up to a per-query constant, so the same
predictions.

Memory is bounded whatever the sizes: queries are taken `query_chunk` at a time and the bank
`bank_chunk` rows at a time (read from the cache file with plain reads, so its memory map
never becomes resident, and normalised chunk by chunk), keeping
only a running top-`max(k)` per query. The peak beyond the inputs is
`query_chunk x bank_chunk` similarities plus one normalised bank chunk and the running
top-k: with the defaults (4,096 x 65,536, float32) about 1.1 GB plus 256 MB for a 1,024-wide
bank chunk, on CPU and on GPU alike.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from probe.core import preempt
from probe.core.arrays import read_rows
from probe.core.errors import ProbeError
from probe.evaluations.bootstrap import score_ci
from probe.evaluations.metrics import score
from probe.evaluations.outcome import Outcome, Task

log = logging.getLogger(__name__)
QUERY_CHUNK = 4096
BANK_CHUNK = 65536


def check_ks(ks: Sequence[int], bank_size: int) -> list[int]:
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ProbeError(f"eval.k={ks} must be positive integers, e.g. [10,20,100,200]")
    if max(ks) > bank_size:
        raise ProbeError(
            f"eval.k={ks}: k={max(ks)} is more than the {bank_size} training images; "
            f"use k <= {bank_size}"
        )
    return sorted(set(ks))


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Each row divided by its norm, at any finite float32 magnitude: the row is first divided
    by its largest |value|, so the squares in the norm can neither overflow (|x| > ~1e19) nor
    vanish (|x| < ~1e-19); a zero row stays zero (cosine similarity 0 with every row)."""
    top = x.abs().amax(dim=1, keepdim=True)
    x = x / torch.where(top > 0, top, torch.ones_like(top))
    return x / x.norm(dim=1, keepdim=True).clamp_min(1.0)  # 0 (zero row) or >= 1


def _normalised(part: np.ndarray, start: int, stop: int, device: str) -> torch.Tensor:
    return unit_rows(torch.from_numpy(read_rows(part, start, stop)).to(device))


def _bank_chunks(parts: Sequence[np.ndarray], rows: int, device: str):
    """(first global row, normalised rows) over the bank's parts without concatenating."""
    offset = 0
    for part in parts:
        for b0 in range(0, len(part), rows):
            yield offset + b0, _normalised(part, b0, b0 + rows, device)
        offset += len(part)


def neighbours(
    queries: np.ndarray,
    bank: Sequence[np.ndarray],
    *,
    k: int,
    device: str = "cpu",
    query_chunk: int = QUERY_CHUNK,
    bank_chunk: int = BANK_CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, bank indices) of each query's k nearest bank rows, most similar first.

    `bank` is a list of arrays (train, val) indexed as if concatenated.
    """
    sims_out = np.empty((len(queries), k), dtype=np.float32)
    idx_out = np.empty((len(queries), k), dtype=np.int64)
    steps = range(0, len(queries), query_chunk)
    for q0 in tqdm(steps, desc="k-NN queries", unit="chunk", disable=len(steps) < 4):
        q = _normalised(queries, q0, q0 + query_chunk, device)
        best_s = torch.full((len(q), 0), -np.inf, device=device)
        best_i = torch.zeros((len(q), 0), dtype=torch.int64, device=device)
        preempt.checkpoint("stopped during the k-NN search")
        for b0, rows in _bank_chunks(bank, bank_chunk, device):
            s = q @ rows.T
            top_s, top_i = s.topk(min(k, s.shape[1]), dim=1)
            cand_s = torch.cat([best_s, top_s], 1)
            cand_i = torch.cat([best_i, top_i + b0], 1)
            best_s, pick = cand_s.topk(min(k, cand_s.shape[1]), dim=1)
            best_i = cand_i.gather(1, pick)
        sims_out[q0 : q0 + len(q)] = best_s.cpu().numpy()
        idx_out[q0 : q0 + len(q)] = best_i.cpu().numpy()
    return sims_out, idx_out


def vote(
    sims: np.ndarray, labels: np.ndarray, *, k: int, temperature: float, num_classes: int
) -> np.ndarray:
    """Predictions from the first k neighbours, each voting exp(sim / T) for its class.

    The weights are taken relative to each query's nearest neighbour, exp((sim - sim_1) / T):
    the same predictions (a per-query factor), but no overflow to inf at small T (from
    T ~ 1/709 up), where tied infinite votes would let the lowest class index win."""
    top = sims[:, :k].astype(np.float64)
    weights = np.exp((top - top[:, :1]) / temperature)
    scores = np.zeros((len(sims), num_classes))
    np.add.at(scores, (np.arange(len(sims))[:, None], labels[:, :k]), weights)
    return scores.argmax(1)


def knn_predict(
    *,
    queries: np.ndarray,
    bank: Sequence[np.ndarray],
    bank_labels: np.ndarray,
    ks: Sequence[int],
    temperature: float,
    num_classes: int,
    device: str = "cpu",
    query_chunk: int = QUERY_CHUNK,
    bank_chunk: int = BANK_CHUNK,
) -> dict[int, np.ndarray]:
    """Test predictions for every k: one neighbour search for the largest k.

    `bank` is a list of arrays (train, val), `bank_labels` their labels concatenated.
    """
    if not temperature > 0:
        raise ProbeError(f"eval.temperature={temperature} must be positive, e.g. 0.07")
    ks = check_ks(ks, sum(len(b) for b in bank))
    with torch.inference_mode():
        sims, idx = neighbours(queries, bank, k=max(ks), device=device,
                               query_chunk=query_chunk, bank_chunk=bank_chunk)  # fmt: skip
    labels = np.asarray(bank_labels, dtype=np.int64)[idx]
    return {
        k: vote(sims, labels, k=k, temperature=temperature, num_classes=num_classes) for k in ks
    }


def evaluate(
    task: Task,
    *,
    name: str = "knn",
    k: Sequence[int] = (10, 20, 100, 200),
    temperature: float = 0.07,
    query_chunk: int = QUERY_CHUNK,
    bank_chunk: int = BANK_CHUNK,
) -> Outcome:
    """`eval=knn`: k chosen on val (bank = train), then test at that k (bank = train + val)."""
    opts = {"temperature": temperature, "num_classes": task.num_classes, "device": task.device,
            "query_chunk": query_chunk, "bank_chunk": bank_chunk}  # fmt: skip
    ks = check_ks(k, len(task.train[1]))
    on_val = knn_predict(queries=task.val[0], bank=[task.train[0]], bank_labels=task.train[1],
                         ks=ks, **opts)  # fmt: skip
    val_by_k = {kk: score(p, task.val[1], task.metric) for kk, p in on_val.items()}
    chosen = max(ks, key=lambda kk: (val_by_k[kk], -kk))  # ties: the smaller k
    labels = np.concatenate([task.train[1], task.val[1]])
    on_test = knn_predict(queries=task.test[0], bank=[task.train[0], task.val[0]],
                          bank_labels=labels, ks=ks, **opts)  # fmt: skip
    y = task.test[1]
    log.info("k-NN: k=%d chosen on val (%s %.2f); test %.2f", chosen, task.metric,
             val_by_k[chosen], score(on_test[chosen], y, task.metric))  # fmt: skip
    fields = {
        "score": score(on_test[chosen], y, task.metric),
        "score_ci": score_ci(on_test[chosen] == y, y, metric=task.metric, **task.bootstrap),
        "k": int(chosen),
        "val_score_by_k": {str(kk): v for kk, v in val_by_k.items()},
        # every k's test score, for curves; none of them chose anything
        "test_score_by_k": {str(kk): score(p, y, task.metric) for kk, p in on_test.items()},
        "temperature": float(temperature),
        "n_bank": len(labels),
        "selection": "k with the best val score (bank = train, queries = val; ties: the "
        "smaller k); test at that k with bank = train + val",
    }
    return Outcome(eval=name, fields=fields)
