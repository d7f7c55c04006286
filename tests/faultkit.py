"""Helpers for the kill / resume / concurrency tests: start the CLI, watch its cache, kill it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
# pixels on digits through a slow stub: 1,347 train rows in shards of 64 (22 shards); a loose
# solver tolerance keeps each probe to seconds (the tests compare runs with the same settings)
SLOW = ["encoder._target_=tests.stubs.slow_pixels", "+encoder.delay=0.03", "batch_size=16",
        "extract.shard_size=64", "num_workers=0", "probe.tol=1e-2"]  # fmt: skip
# The slow stub's per-batch delay, read at each batch and outside the cache fingerprint
# (tests/stubs.py). `popen` children never inherit it: they sleep as configured unless
# `extra_env` sets it. In-process runs set it to 0 (`undelayed`).
STUB_DELAY = "PROBE_STUB_DELAY"


def env() -> dict[str, str]:
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": pythonpath}


def popen(
    args: list[str], *, cwd: Path, module: str = "probe", extra_env: dict | None = None
) -> subprocess.Popen:
    """`python -m probe ARGS` started in the background, output to files in `cwd`."""
    log = cwd / f"out-{time.monotonic_ns()}.log"
    inherited = {k: v for k, v in env().items() if k != STUB_DELAY}
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", *module.split(), *args],
            cwd=cwd, env={**inherited, **(extra_env or {})}, text=True, stdout=fh,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    proc.log_path = log  # type: ignore[attr-defined]
    return proc


@contextlib.contextmanager
def undelayed() -> Iterator[None]:
    """In-process runs of the slow stub without its sleep: resuming or rebuilding the entry a
    slowed child wrote (the same entry: the delay override is not fingerprinted) checks the
    same bytes, only sooner. `popen` children started meanwhile still sleep."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(STUB_DELAY, "0")
        yield


def output(proc: subprocess.Popen) -> str:
    return proc.log_path.read_text()  # type: ignore[attr-defined]


def wait_for(cond: Callable[[], bool], *, timeout: float = 120.0, proc=None) -> bool:
    """Poll `cond` until true; False if `proc` ended first or time ran out."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        if proc is not None and proc.poll() is not None:
            return cond()
        time.sleep(0.01)
    return False


def sigkill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def entries(cache: Path, split: str) -> list[Path]:
    return sorted(p for p in cache.rglob(f"{split}-*") if p.is_dir())


def shards_done(cache: Path, split: str) -> int:
    return sum(len(list((e / "progress").glob("*.json"))) for e in entries(cache, split))


def finished(cache: Path) -> dict[str, tuple[bytes, np.ndarray]]:
    """split -> (features.npy bytes, labels) of every finished entry under `cache`."""
    out = {}
    for meta in sorted(cache.rglob("meta.json")):
        split = meta.parent.name.split("-")[0]
        out[split] = ((meta.parent / "features.npy").read_bytes(),
                      np.load(meta.parent / "labels.npy"))  # fmt: skip
    return out
