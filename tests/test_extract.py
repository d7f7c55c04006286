"""Extraction at scale: resume after SIGKILL, one writer per entry, torchrun ranks, OOM, memory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_cfg
from faultkit import (
    SLOW,
    STUB_DELAY,
    entries,
    env,
    finished,
    output,
    popen,
    shards_done,
    sigkill,
    undelayed,
    wait_for,
)

from probe.core.errors import ProbeError
from probe.datasets.base import Split
from probe.encoders.base import Encoder
from probe.features.cache import CacheEntry
from probe.features.extract import extract_split, resolve_num_workers
from probe.features.lock import EntryLock
from probe.run import run


def dirs_in(tmp: Path, name: str = "") -> list[str]:
    return [f"cache_dir={tmp / ('cache' + name)}", f"results_dir={tmp / 'results'}",
            f"data_root={tmp / 'data'}"]  # fmt: skip


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """An uninterrupted in-process extraction with the slow stub's settings (no delay)."""
    tmp = tmp_path_factory.mktemp("ref")
    fast = [a if not a.startswith("+encoder.delay") else "+encoder.delay=0" for a in SLOW]
    run(compose_cfg([*dirs_in(tmp), *fast, "stage=extract"]))
    return finished(tmp / "cache")


def test_kill_then_resume_is_bit_identical(tmp_path: Path, reference, caplog) -> None:
    cache = tmp_path / "cache"
    proc = popen([*dirs_in(tmp_path), *SLOW, "stage=extract"], cwd=tmp_path)
    assert wait_for(lambda: shards_done(cache, "train") >= 3, proc=proc), output(proc)
    sigkill(proc)
    [entry] = entries(cache, "train")
    assert not (entry / "meta.json").exists(), "meta.json before every row was written"
    kept = shards_done(cache, "train")
    assert 3 <= kept < 22
    caplog.set_level("INFO")
    with undelayed():  # the resume, in-process
        run(compose_cfg([*dirs_in(tmp_path), *SLOW, "stage=extract"]))
    assert f"resuming, {kept} of 22 shards already written" in caplog.text
    got = finished(cache)
    assert set(got) == {"train", "test"}
    for split, (feats, labels) in reference.items():
        assert got[split][0] == feats, f"{split} features differ from an uninterrupted run"
        assert np.array_equal(got[split][1], labels)
    assert not (entry / "progress").exists() and not (entry / "partial.json").exists()


def test_two_jobs_one_entry_one_extracts(tmp_path: Path, reference) -> None:
    cache = tmp_path / "cache"
    slower = [a if "encoder.delay" not in a else "+encoder.delay=0.1" for a in SLOW]  # 9 s
    procs = [popen([*dirs_in(tmp_path), *slower, "stage=extract"], cwd=tmp_path) for _ in "ab"]
    for p in procs:
        assert p.wait(timeout=300) == 0, output(p)
    logs = "".join(output(p) for p in procs)
    assert "is locked by pid" in logs and "filled meanwhile by another job" in logs
    assert logs.count("train: 1347 x 64 features") == 1, "both jobs extracted train"
    got = finished(cache)
    assert {s: v[0] for s, v in got.items()} == {s: v[0] for s, v in reference.items()}


def test_waiter_takes_over_when_the_holder_is_killed(tmp_path: Path, reference) -> None:
    """The dead holder's lock is gone with it; the waiter resumes the holder's shards.

    The holder runs at 0.5 s a batch (43 s for train), so it still holds the lock however
    long the waiter takes to start on a loaded machine; it is killed once the waiter waits.
    The waiter, once it holds the lock, runs without the stub's delay (the same entry).
    """
    cache = tmp_path / "cache"
    slower = [a if "encoder.delay" not in a else "+encoder.delay=0.1" for a in SLOW]
    holder = popen([*dirs_in(tmp_path), *slower, "stage=extract"], cwd=tmp_path,
                   extra_env={STUB_DELAY: "0.5"})  # fmt: skip
    assert wait_for(lambda: shards_done(cache, "train") >= 1, proc=holder), output(holder)
    waiter = popen([*dirs_in(tmp_path), *slower, "stage=extract"], cwd=tmp_path,
                   extra_env={STUB_DELAY: "0"})  # fmt: skip
    assert wait_for(lambda: "is locked by pid" in output(waiter), proc=waiter), output(waiter)
    sigkill(holder)
    assert waiter.wait(timeout=300) == 0, output(waiter)
    assert "resuming," in output(waiter)
    got = finished(cache)
    assert {s: v[0] for s, v in got.items()} == {s: v[0] for s, v in reference.items()}


def test_lock_timeout_names_holder_and_stale_lock_recovers(tmp_path: Path) -> None:
    path = tmp_path / "entry.lock"
    with EntryLock(path, timeout=1):
        with pytest.raises(ProbeError, match=rf"held by pid {os.getpid()} on host"):
            EntryLock(path, timeout=0.3, poll=0.05).acquire()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from probe.features.lock import EntryLock; "
         f"EntryLock({str(path)!r}).acquire(); print('held', flush=True); time.sleep(600)"],
        env=env(), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    assert path.read_text().split() == [str(holder.pid), socket.gethostname()]
    with pytest.raises(ProbeError, match=str(holder.pid)):
        EntryLock(path, timeout=0.2, poll=0.05).acquire()
    sigkill(holder)
    with EntryLock(path, timeout=2):  # the kernel dropped the dead holder's lock
        pass


def test_lock_file_fallback_removes_dead_pid(tmp_path: Path) -> None:
    """Where flock is refused (some NFS mounts): an exclusive lock file, checked by pid."""
    path = tmp_path / "entry.lock"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "entry.lock.excl").write_text(f"{dead.pid} {socket.gethostname()}")
    lock = EntryLock(path, timeout=2, poll=0.05)
    lock._excl = True
    lock.acquire()
    assert (tmp_path / "entry.lock.excl").read_text().split()[0] == str(os.getpid())
    other = EntryLock(path, timeout=0.2, poll=0.05)
    other._excl = True
    with pytest.raises(ProbeError, match="timed out"):
        other.acquire()
    lock.release()
    assert not (tmp_path / "entry.lock.excl").exists()


def test_torchrun_two_ranks_equal_one_process(tmp_path: Path, reference) -> None:
    fast = [a for a in SLOW if not a.startswith("+encoder.delay")] + ["+encoder.delay=0"]
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "probe", *dirs_in(tmp_path), *fast, "stage=extract", "device=cpu"],
        cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = finished(tmp_path / "cache")
    assert {s: v[0] for s, v in got.items()} == {s: v[0] for s, v in reference.items()}
    metas = [json.loads(p.read_text()) for p in (tmp_path / "cache").rglob("meta.json")]
    assert all(len(m["checksum"]["shards"]) in (22, 8) for m in metas)
    logs = sorted(p.parent.name for p in (tmp_path / "results" / "logs").rglob("*.log"))
    assert any(n.endswith("_rank0") for n in logs) and any(n.endswith("_rank1") for n in logs)


def _toy_split(n: int) -> Split:
    return Split(items=list(range(n)), labels=np.arange(n) % 7, load=float)


def _row_transform(x: float) -> torch.Tensor:
    return torch.tensor([x], dtype=torch.float32)


def test_oom_halves_the_batch(tmp_path: Path) -> None:
    from stubs import OOMAbove

    def wide(b: torch.Tensor) -> torch.Tensor:
        return b * torch.arange(1, 9, dtype=torch.float32)

    forward = OOMAbove(wide, max_batch=5)
    enc = Encoder(transform=_row_transform, forward=forward)
    entry = CacheEntry(tmp_path / "e", {"k": 1})
    meta = extract_split(encoder=enc, split=_toy_split(100), entry=entry, batch_size=32,
                         num_workers=0, desc="toy", shard_size=40)  # fmt: skip
    feats, _ = entry.load()
    assert meta["n"] == 100 and np.array_equal(feats, np.arange(100)[:, None] * np.arange(1, 9))
    assert forward.sizes[1:5] == [32, 16, 8, 4] and max(forward.sizes[4:]) <= 5, "not sticky"
    forward.max_batch = 0
    with pytest.raises(ProbeError, match="out of GPU memory even at batch size 1"):
        extract_split(encoder=enc, split=_toy_split(10), entry=CacheEntry(tmp_path / "f", {}),
                      batch_size=4, num_workers=0, desc="toy")  # fmt: skip


def _rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon")


class _Spread:
    """(B, 1) -> (B, D) fresh tensors; remembers weak references to what it returned."""

    def __init__(self, dim: int) -> None:
        self.cols = torch.arange(dim, dtype=torch.float32)
        self.outputs: list[weakref.ref] = []

    def __call__(self, b: torch.Tensor) -> torch.Tensor:
        out = b + self.cols
        self.outputs.append(weakref.ref(out))
        return out


def test_memory_stays_flat_on_a_split_larger_than_the_limit(tmp_path: Path) -> None:
    n, dim, limit = 65536, 1024, 48 << 20  # 256 MiB of features, 48 MiB allowed
    forward = _Spread(dim)
    enc = Encoder(transform=_row_transform, forward=forward)
    entry = CacheEntry(tmp_path / "e", {"k": 1})
    base, peak, stop = _rss_anon(), [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_anon() - base)
            stop.wait(0.005)

    watcher = threading.Thread(target=sample)
    watcher.start()
    try:
        extract_split(encoder=enc, split=_toy_split(n), entry=entry, batch_size=1024,
                      num_workers=0, desc="big", shard_size=4096)  # fmt: skip
    finally:
        stop.set()
        watcher.join()
    assert n * dim * 4 >= 4 * limit
    print(f"anonymous memory grew by {peak[0] >> 20} MiB")
    assert peak[0] < limit, f"anonymous memory grew by {peak[0] >> 20} MiB"
    assert sum(r() is not None for r in forward.outputs) <= 2, "batches were kept"
    feats, _ = entry.load()
    assert feats[12345, 7] == 12345 + 7 and feats[-1, -1] == n - 1 + dim - 1


def test_compile_true_compiles_the_encoder(tmp_path: Path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: calls.append(fn) or fn)
    run(compose_cfg([*dirs_in(tmp_path), "stage=extract", "compile=true"]))
    assert len(calls) == 1


def test_num_workers_auto_shares_the_job_cpus(monkeypatch) -> None:
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "16")
    assert resolve_num_workers("auto", 10**6) == 15
    assert resolve_num_workers("auto", 10**6, procs_per_node=4) == 3
    assert resolve_num_workers("auto", 100) == 0
    assert resolve_num_workers(3, 10) == 3
    with pytest.raises(ProbeError, match="num_workers=-1"):
        resolve_num_workers(-1, 10)


def test_bench_extract_runs_on_cpu_with_a_tiny_shape(tmp_path: Path, capsys) -> None:
    from probe.bench.__main__ import main

    out_json = tmp_path / "bench.json"
    argv = ["extract", "encoder=mlcd_l14", "--shape", "tiny", "--n-images", "24",
            "--batch-size", "8", "--iters", "2", "--device", "cpu", "--num-workers", "0",
            "--images", str(tmp_path / "jpegs"), "--json", str(out_json)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "forward-only ceiling" in printed and "full pipeline" in printed
    res = json.loads(out_json.read_text())
    assert res["ceiling_images_per_s"] > 0 and res["pipeline_images_per_s"] > 0
    assert res["ratio"] == pytest.approx(
        res["pipeline_images_per_s"] / res["ceiling_images_per_s"], rel=0.01, abs=1e-3
    )
    assert len(list((tmp_path / "jpegs").glob("*.jpg"))) == 24


@pytest.mark.parametrize("shape", ["mlcd_l14", "mlcd_bigg14_336"])
def test_bench_shapes_are_valid_transformers_configs(shape: str) -> None:
    import transformers

    from probe.bench.extract import SHAPES

    cls_name, kw = SHAPES[shape]
    config = getattr(transformers, cls_name)(**kw)
    assert config.hidden_size % config.num_attention_heads == 0
    assert (config.image_size, config.patch_size) == (336, 14)
    assert hasattr(transformers, cls_name.replace("Config", "Model"))
