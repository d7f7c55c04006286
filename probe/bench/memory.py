"""`python -m probe.bench memory [--rows N --dim D --classes K ...]`: what a probe stage holds.

Builds a synthetic cache the shape of ImageNet's by default (1,281,167 train rows of 1,024
float32, 50,000 test rows, 100 classes; val is 50,000 train rows carved as for ImageNet)
through the real path: an uncompressed `.npz` streamed to disk, then `python -m probe
stage=extract encoder=precomputed dataset=npz`. The `.npz` is then deleted and each backend
runs `python -m probe stage=probe` with a small iteration cap in its own subprocess, so the
peak resident set (`ru_maxrss` of that child, from `os.wait4`) is that run's alone. Printed
per backend: wall time, the peak, the peak as a multiple of the cached train features'
bytes, and `probe.solvers.memory.estimate` beside it. A backend whose estimate exceeds what
this machine has (`probe.core.limits.host_limit`) is not run; the table says so.

100 classes rather than 1,000: the torch backend then caches its float64 logits (1.0 GB),
its larger case; at 1,000 they exceed `passes.CACHE_BYTES` and are not kept, and the
passes cost ten times more CPU for the same memory story.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from probe.core.limits import host_limit
from probe.solvers.memory import GiB, estimate

BLOCK = 32768  # rows generated and written at a time


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m probe.bench memory", description=__doc__)
    p.add_argument("--rows", type=int, default=1_281_167, help="train rows (ImageNet's)")
    p.add_argument("--test-rows", type=int, default=50_000, help="test rows")
    p.add_argument("--val", type=int, default=50_000, help="train rows carved as val")
    p.add_argument("--dim", type=int, default=1024, help="feature width")
    p.add_argument("--classes", type=int, default=100, help="number of classes")
    p.add_argument("--backends", default="torch,sklearn", help="comma-separated probe configs")
    p.add_argument("--max-iter", type=int, default=2, help="probe.max_iter of each run")
    p.add_argument("--dir", type=Path, help="where the .npz and the cache go (a temp dir)")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    return p.parse_args(argv)


def write_npz(path: Path, *, rows: int, test_rows: int, dim: int, classes: int) -> Path:
    """An uncompressed .npz streamed block by block (never the whole array in memory):
    Gaussian features around per-class means, so the fits have something to find."""
    rng = np.random.default_rng(0)
    means = 0.1 * rng.standard_normal((classes, dim), dtype=np.float32)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for split, n in (("train", rows), ("test", test_rows)):
            y = rng.integers(0, classes, n)
            y[:classes] = np.arange(classes)  # every class present
            with zf.open(f"x_{split}.npy", "w", force_zip64=True) as fh:
                header = {"descr": "<f4", "fortran_order": False, "shape": (n, dim)}
                np.lib.format.write_array_header_2_0(fh, header)
                for a in range(0, n, BLOCK):
                    yb = y[a : a + BLOCK]
                    x = rng.standard_normal((len(yb), dim), dtype=np.float32) + means[yb]
                    fh.write(x.tobytes())
            with zf.open(f"y_{split}.npy", "w") as fh:
                np.lib.format.write_array(fh, y.astype(np.int64))
    return path


def measure(cmd: list[str], log: Path) -> tuple[int, float, int]:
    """(exit status, wall seconds, peak RSS bytes) of one child process."""
    start = time.perf_counter()
    with open(log, "w") as out:
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, time.perf_counter() - start, usage.ru_maxrss * 1024  # kB on Linux


def run_probe(args, work: Path, overrides: list[str], backend: str, feature_bytes: int) -> dict:
    est = estimate(backend=backend, n_train=args.rows - args.val, n_val=args.val,
                   n_test=args.test_rows, dim=args.dim, num_classes=args.classes)  # fmt: skip
    row = {"backend": backend, "estimate_gib": est.host / GiB, "terms": est.terms}
    limit = host_limit()
    if limit is not None and est.host > limit[0]:
        row["skipped"] = (
            f"estimate {est.host / GiB:.1f} GiB > {limit[0] / GiB:.1f} GiB ({limit[1]})"
        )
        return row
    log = work / f"probe_{backend}.log"
    cmd = [sys.executable, "-m", "probe", *overrides, "stage=probe", f"probe={backend}",
           f"probe.max_iter={args.max_iter}"]  # fmt: skip
    rc, seconds, peak = measure(cmd, log)
    if rc != 0:
        raise SystemExit(f"{backend} run failed (exit {rc}); see {log}:\n{log.read_text()[-2000:]}")
    row.update(seconds=seconds, peak_gib=peak / GiB, times_features=peak / feature_bytes,
               estimate_over_peak=est.host / peak)  # fmt: skip
    return row


def main(argv: list[str]) -> int:
    args = parse(argv)
    work = Path(args.dir or tempfile.mkdtemp(prefix="probe-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    npz = work / "features.npz"
    overrides = ["encoder=precomputed", "dataset=npz", f"dataset.path={npz}",
                 "dataset.name=memory_bench", f"+dataset.val.count={args.val}", "device=cpu",
                 f"cache_dir={work / 'cache'}", f"results_dir={work / 'results'}"]  # fmt: skip
    feature_bytes = args.rows * args.dim * 4
    try:
        start = time.perf_counter()
        write_npz(npz, rows=args.rows, test_rows=args.test_rows, dim=args.dim,
                  classes=args.classes)  # fmt: skip
        written = time.perf_counter() - start
        rc, extract_s, extract_peak = measure(
            [sys.executable, "-m", "probe", *overrides, "stage=extract"], work / "extract.log"
        )
        if rc != 0:
            raise SystemExit(f"extraction failed (exit {rc}); see {work / 'extract.log'}")
        npz.unlink()  # stage=probe needs the cache only
        header(args, feature_bytes, written=written, extract=(extract_s, extract_peak))
        rows = []
        for backend in args.backends.split(","):  # each row printed (and saved) when done
            rows.append(run_probe(args, work, overrides, backend, feature_bytes))
            print_row(rows[-1])
            if args.json:
                args.json.write_text(json.dumps({"args": {k: str(v) for k, v in
                                     vars(args).items()}, "rows": rows}, indent=2))  # fmt: skip
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            npz.unlink(missing_ok=True)
    return 0


def header(args, feature_bytes: int, *, written: float, extract) -> None:
    print(f"synthetic cache: {args.rows:,} x {args.dim:,} float32 train ({feature_bytes / GiB:.2f}"
          f" GiB), {args.test_rows:,} test, {args.classes} classes, val {args.val:,} carved; "
          f".npz written in {written:.0f}s, extracted in {extract[0]:.0f}s "
          f"(peak {extract[1] / GiB:.2f} GiB)")  # fmt: skip
    print(f"stage=probe probe.max_iter={args.max_iter}")
    print(f"{'backend':<8} {'wall s':>7} {'peak GiB':>9} {'x features':>10} "
          f"{'estimate GiB':>12} {'est/peak':>8}", flush=True)  # fmt: skip


def print_row(r: dict) -> None:
    if "skipped" in r:
        print(f"{r['backend']:<8} not run: {r['skipped']}", flush=True)
        return
    print(f"{r['backend']:<8} {r['seconds']:>7.0f} {r['peak_gib']:>9.2f} "
          f"{r['times_features']:>10.2f} {r['estimate_gib']:>12.2f} "
          f"{r['estimate_over_peak']:>8.2f}", flush=True)  # fmt: skip
