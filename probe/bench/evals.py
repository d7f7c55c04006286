"""`python -m probe.bench evals`: the k-NN probe's time and peak memory, and few-shot time.

k-NN: an ImageNet-shaped synthetic problem (1,000 classes, 1,024 wide) written to disk as
`.npy` files and read back as memory maps, exactly as the probe reads a cache entry; the
k-NN runs in a fresh child process, which reports its wall time and its peak resident set
(`ru_maxrss`) both as it stood before the search (after imports and opening the maps) and
at the end. The full shape is 50,000 queries against 1,281,167 bank rows (131 TFLOP of
similarities: minutes on a GPU, most of an hour on a 2-core CPU); by default the CPU runs a
subsample of 10,000 queries against 256,000 rows (`--queries`, `--bank-rows`).

Few-shot: the CIFAR-100-shaped synthetic problem of the solver bench (50,000 x 1,024 x 100,
20% carved for validation, 10,000 test), every shot count and seed with the torch backend.

Attentive: 20 heads trained together against one head trained alone on a token cache
subsample (`probe.bench.attentive`: by default 5,000 x 64 tokens x 384, 100 classes), and
whether the heads trained together equal the same heads trained alone.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FULL_BANK, FULL_QUERIES = 1_281_167, 50_000


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m probe.bench evals", description=__doc__)
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--bank-rows", type=int, default=None, help="CPU default 256,000")
    ap.add_argument("--queries", type=int, default=None, help="CPU default 10,000")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--ks", default="10,20,100,200")
    ap.add_argument("--shots", default="1,2,4,8,16")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--skip", choices=("knn", "fewshot", "attentive"), action="append",
                    default=[], help="leave one out (repeatable)")  # fmt: skip
    ap.add_argument("--rows", type=int, default=None, help="attentive: CPU default 5,000")
    ap.add_argument("--tokens", type=int, default=64, help="attentive: tokens a row")
    ap.add_argument("--token-dim", type=int, default=384, help="attentive: token width")
    ap.add_argument("--token-classes", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=1, help="attentive: epochs of each training")
    ap.add_argument("--batch", type=int, default=256, help="attentive: batch size")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--dir", type=Path, default=None, help="where the synthetic .npy go")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    return ap.parse_args(argv)


def _write_rows(path: Path, *, n: int, dim: int, classes: int, seed: int) -> np.ndarray:
    """Class-conditional Gaussians written in chunks into a .npy; returns the labels."""
    rng = np.random.Generator(np.random.PCG64(seed))
    means = np.random.Generator(np.random.PCG64(12345)).standard_normal(
        (classes, dim), dtype=np.float32
    )
    labels = rng.integers(0, classes, n)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    for s in range(0, n, 65536):
        yc = labels[s : s + 65536]
        out[s : s + len(yc)] = means[yc] * 0.25 + rng.standard_normal(
            (len(yc), dim), dtype=np.float32
        )
    out.flush()
    del out
    return labels


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _knn_child(paths: dict[str, str], opts: dict[str, Any], queue: Any) -> None:
    from probe.evaluations.knn import knn_predict

    bank = np.load(paths["bank"], mmap_mode="r")
    queries = np.load(paths["queries"], mmap_mode="r")
    labels = np.load(paths["bank_labels"])
    before = _peak_mib()
    start = time.perf_counter()
    preds = knn_predict(queries=queries, bank=[bank], bank_labels=labels, ks=opts["ks"],
                        temperature=0.07, num_classes=opts["classes"],
                        device=opts["device"])  # fmt: skip
    seconds = time.perf_counter() - start
    qlab = np.load(paths["query_labels"])
    acc = {k: float((p == qlab).mean() * 100) for k, p in preds.items()}
    queue.put({"seconds": seconds, "peak_before_mib": before, "peak_mib": _peak_mib(),
               "top1": acc})  # fmt: skip


def bench_knn(args: argparse.Namespace, device: str) -> dict[str, Any]:
    gpu = device.startswith("cuda")
    n_bank = args.bank_rows or (FULL_BANK if gpu else 256_000)
    n_q = args.queries or (FULL_QUERIES if gpu else 10_000)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="probe-bench-knn-") as tmp:
        paths = {k: str(Path(tmp) / f"{k}.npy") for k in
                 ("bank", "queries", "bank_labels", "query_labels")}  # fmt: skip
        np.save(paths["bank_labels"], _write_rows(Path(paths["bank"]), n=n_bank, dim=args.dim,
                                                  classes=args.classes, seed=0))  # fmt: skip
        np.save(paths["query_labels"], _write_rows(Path(paths["queries"]), n=n_q, dim=args.dim,
                                                   classes=args.classes, seed=1))  # fmt: skip
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        opts = {"ks": [int(k) for k in args.ks.split(",")], "classes": args.classes,
                "device": device}  # fmt: skip
        child = ctx.Process(target=_knn_child, args=(paths, opts, queue))
        child.start()
        out = queue.get()
        child.join()
    bank_mib = n_bank * args.dim * 4 / 2**20
    return {"queries": n_q, "bank_rows": n_bank, "dim": args.dim, "classes": args.classes,
            "bank_mib": round(bank_mib, 1), **out,
            "search_mib": round(out["peak_mib"] - out["peak_before_mib"], 1)}  # fmt: skip


def bench_fewshot(args: argparse.Namespace, device: str) -> dict[str, Any]:
    from probe.bench.problems import build
    from probe.datasets.splits import stratified_holdout
    from probe.evaluations.fewshot import fewshot
    from probe.solvers.torch_solver import TorchSolver

    prob = build("cifar100", gpu=False)
    keep, hold = stratified_holdout(prob.y, fraction=0.2, seed=0)
    shots = [int(k) for k in args.shots.split(",")]
    start = time.perf_counter()
    by_k = fewshot(solver=TorchSolver(device=device), train=(prob.X[keep], prob.y[keep]),
                   val=(prob.X[hold], prob.y[hold]), test=(prob.Xt, prob.yt),
                   num_classes=prob.num_classes, metric="top1", shots=shots,
                   seeds=args.seeds)  # fmt: skip
    seconds = time.perf_counter() - start
    return {"shape": prob.shape, "shots": shots, "seeds": args.seeds,
            "seconds": round(seconds, 1), "searches": len(shots) * args.seeds,
            "mean": {k: round(v["mean"], 2) for k, v in by_k.items()},
            "std": {k: v["std"] and round(v["std"], 2) for k, v in by_k.items()}}  # fmt: skip


def main(argv: list[str]) -> int:
    from probe.core.device import resolve_device

    args = parse(argv)
    device = resolve_device(args.device)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out: dict[str, Any] = {"device": device}
    if "knn" not in args.skip:
        k = out["knn"] = bench_knn(args, device)
        print(f"k-NN on {device}: {k['queries']:,} queries x {k['bank_rows']:,} bank rows x "
              f"{k['dim']} ({k['classes']} classes), k={args.ks}: {k['seconds']:.1f} s; peak "
              f"RSS {k['peak_mib']:.0f} MiB, {k['search_mib']:.0f} MiB of it for the search "
              f"({k['peak_before_mib']:.0f} MiB before it) with a {k['bank_mib']:.0f} MiB bank "
              "on disk")  # fmt: skip
    if "fewshot" not in args.skip:
        f = out["fewshot"] = bench_fewshot(args, device)
        print(f"few-shot on {device}: {f['shape']}, shots {f['shots']} x {f['seeds']} seeds "
              f"({f['searches']} searches): {f['seconds']:.1f} s; mean top-1 by k "
              f"{f['mean']}")  # fmt: skip
    if "attentive" not in args.skip:
        from probe.bench.attentive import bench_attentive, report

        out["attentive"] = bench_attentive(args, device)
        print(report(out["attentive"], device))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0
