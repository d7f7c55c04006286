"""The probe stage's memory estimate, the limits it is checked against, and the refusal.

The limits are read from real files laid out as the kernel writes them (a meminfo, cgroup v1
and v2 trees, a /proc/self/cgroup) and from SLURM's environment variables; the estimate is
checked against the peak resident set of a real `stage=probe` subprocess (the memory bench
at a small size).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import compose_cfg

from probe.bench import memory as bench
from probe.core import rows
from probe.core.errors import ProbeError
from probe.core.limits import host_limit
from probe.evaluations import linear
from probe.run import run
from probe.solvers import base, memory, passes, resident

GB = 2**30
IMAGENET = {"n_train": 1_231_167, "n_val": 50_000, "n_test": 50_000, "dim": 1024}


def test_the_constants_are_the_solvers_own() -> None:
    assert memory.CACHE_BYTES == passes.CACHE_BYTES
    assert memory.ROWS == resident.ROWS == rows.BLOCK
    assert memory.CERT_BYTES == base.CHUNK_BYTES
    assert memory.SEARCH_POINTS == len(linear.INITIAL) + 2 * len(linear.STEPS)
    assert memory.STACK[0] == len(linear.INITIAL)


@pytest.mark.parametrize("classes", [100, 1000])
def test_torch_on_cpu_holds_at_most_twice_the_features(classes: int) -> None:
    """The issue's budget, at ImageNet's shape: beyond the interpreter, at most 2x the
    cached train features; sklearn's float64 copy alone is 2x."""
    features = (IMAGENET["n_train"] + IMAGENET["n_val"]) * IMAGENET["dim"] * 4
    est = memory.estimate(backend="torch", num_classes=classes, **IMAGENET)
    assert est.device == 0 and est.host - memory.RUNTIME <= 2 * features
    sk = memory.estimate(backend="sklearn", num_classes=classes, **IMAGENET)
    assert sk.host - memory.RUNTIME > 2 * features
    gpu = memory.estimate(backend="torch", num_classes=classes, device="cuda", **IMAGENET)
    assert gpu.device > features and gpu.host < features  # the features live on the device


def test_unknown_backend_is_a_probe_error() -> None:
    with pytest.raises(ProbeError, match="unknown probe backend 'svm'"):
        memory.estimate(backend="svm", num_classes=10, **IMAGENET)


def _meminfo(tmp_path: Path, available_kb: int) -> Path:
    path = tmp_path / "meminfo"
    lines = ["MemTotal:       32000000 kB", "MemFree:         1000000 kB",
             f"MemAvailable:   {available_kb:>9} kB", "Buffers:            1000 kB"]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def _cgroup_v2(tmp_path: Path, *, limit: str, current: int) -> tuple[Path, Path]:
    root = tmp_path / "cgroup2"
    leaf = root / "system.slice" / "job.scope"
    leaf.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (root / "system.slice" / "memory.max").write_text(f"{limit}\n")
    (root / "system.slice" / "memory.current").write_text(f"{current}\n")
    (leaf / "memory.max").write_text("max\n")
    (leaf / "memory.current").write_text(f"{current}\n")
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/system.slice/job.scope\n")
    return root, proc


def test_the_smallest_limit_wins_and_says_where_it_comes_from(tmp_path: Path) -> None:
    meminfo = _meminfo(tmp_path, 20 * 2**20)  # 20 GiB available
    root, proc = _cgroup_v2(tmp_path, limit=str(8 * GB), current=3 * GB)
    kw = {"meminfo": meminfo, "cgroup_root": root, "proc_cgroup": proc, "rss": GB}
    assert host_limit(**kw, env={}) == (6 * GB, "cgroup limit, 5.0 GiB free + this process")
    slurm = host_limit(**kw, env={"SLURM_MEM_PER_NODE": "4096"})  # sbatch --mem is in MB
    assert slurm == (4096 * 2**20, "SLURM allocation 4096 MB")
    per_cpu = host_limit(**kw, env={"SLURM_MEM_PER_CPU": "1000", "SLURM_CPUS_ON_NODE": "3"})
    assert per_cpu[0] == 3000 * 2**20
    unlimited, _ = _cgroup_v2(tmp_path / "u", limit="max", current=3 * GB)
    alone = host_limit(**{**kw, "cgroup_root": unlimited}, env={})
    assert alone == (21 * GB, "MemAvailable 20.0 GiB + this process")


def test_cgroup_v1_limit_is_read_under_the_memory_controller(tmp_path: Path) -> None:
    leaf = tmp_path / "cg" / "memory" / "slurm" / "job_7"
    leaf.mkdir(parents=True)
    (leaf / "memory.limit_in_bytes").write_text(f"{2 * GB}\n")
    (leaf / "memory.usage_in_bytes").write_text(f"{GB // 2}\n")
    top = tmp_path / "cg" / "memory"
    (top / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    (top / "memory.usage_in_bytes").write_text(f"{10 * GB}\n")
    proc = tmp_path / "proc_cgroup"
    proc.write_text("5:cpuset:/\n4:memory:/slurm/job_7\n0::/\n")
    got = host_limit(meminfo=_meminfo(tmp_path, 50 * 2**20), cgroup_root=tmp_path / "cg",
                     proc_cgroup=proc, env={}, rss=0)  # fmt: skip
    assert got[0] == GB + GB // 2


def test_a_run_over_its_slurm_allocation_fails_early_naming_the_numbers(
    dirs, monkeypatch, caplog
) -> None:
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "300")
    caplog.set_level("INFO")
    with pytest.raises(ProbeError) as err:
        run(compose_cfg([*dirs, "probe.max_iter=20"]))
    msg = str(err.value)
    assert "\n" not in msg
    assert "needs about 0.9 GiB of host memory" in msg and "SLURM allocation 300 MB" in msg
    assert "sbatch --mem=" in msg and "memory_check=false" in msg
    assert "probe memory estimate (torch): host 0.8" in caplog.text
    assert not (Path(dirs[1].split("=", 1)[1]) / "pixels" / "digits.json").exists()
    done = run(compose_cfg([*dirs, "probe.max_iter=20", "memory_check=false", "stage=probe"]))
    assert done["score"] > 50


def test_the_estimate_is_close_to_the_measured_peak(tmp_path: Path, capsys) -> None:
    """The bench at a small size: a real cache, `python -m probe stage=probe`, the child's
    own peak RSS. Stated factor: the estimate lies within 0.85x to 1.5x (the bench at
    100,000 x 1,024 and at ImageNet's size checks the same for both backends)."""
    out = tmp_path / "bench.json"
    small = ["--rows", "20000", "--val", "4000", "--test-rows", "2000", "--dim", "384",
             "--classes", "10", "--max-iter", "1", "--backends", "torch"]  # fmt: skip
    bench.main([*small, "--dir", str(tmp_path / "work"), "--json", str(out)])
    assert "torch" in capsys.readouterr().out
    for row in json.loads(out.read_text())["rows"]:
        assert 0.85 <= row["estimate_over_peak"] <= 1.5, row


def _logit_buffers(n: int, k: int) -> int:
    """Distinct float64 storages alive that hold at least one N x K logits table."""
    import gc

    import torch

    ptrs = {t.untyped_storage().data_ptr() for t in gc.get_objects()
            if isinstance(t, torch.Tensor) and t.dtype == torch.float64
            and t.untyped_storage().nbytes() >= n * k * 8}  # fmt: skip
    return len(ptrs)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # gc.get_objects meets deprecated torch names
def test_one_logit_cache_alive_at_a_time_on_cpu(monkeypatch) -> None:
    """Fitting C values one after another on CPU, each first pass finds no other N x K
    logits alive (before: the previous C's cache, a zero block and its concatenation)."""
    import numpy as np

    from probe.solvers.torch_solver import TorchSolver

    rng = np.random.default_rng(0)
    n, k = 3000, 8
    X = rng.standard_normal((n, 16)).astype(np.float32)
    y = np.arange(n) % k
    seen, previous = [], passes._previous_logits

    def counting(p, caches):
        out = previous(p, caches)
        seen.append(_logit_buffers(p.n, p.k))
        return out

    monkeypatch.setattr(passes, "_previous_logits", counting)
    TorchSolver(stack=False, max_iter=20).fit_many(X, y, Cs=[0.01, 0.1, 1.0], num_classes=k,
                                                  inits=[None, None, None])  # fmt: skip
    assert seen and max(seen) == 1, seen
