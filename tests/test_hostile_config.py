"""Wrong values on the command line: one line naming the key, the value and what it takes,
exit 2, before anything is built (`probe/core/params.py`), never a traceback or a value
silently truncated; and a results_dir Hydra cannot make its log folder in."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import compose_cfg, main_refuses, run_cli

from probe.core.errors import ProbeError
from probe.launch.grid import resolve_runs
from probe.run import run

BAD = [
    ("batch_size=abc", r"batch_size='abc' must be a positive integer, e.g. 256"),
    ("batch_size=2.5", r"batch_size=2.5 must be a positive integer"),
    ("seed=abc", r"seed='abc' must be an integer"),
    ("seed=1.5", r"seed=1.5 must be an integer"),
    ("device=tpu", r"device='tpu' is not valid; allowed: auto, cpu, cuda, cuda:N"),
    ("device=cuda:x", r"device='cuda:x' is not valid"),
    ("num_workers=abc", r"num_workers='abc' must be >= 0 or 'auto'"),
    ("num_workers=1.5", r"num_workers=1.5 must be >= 0 or 'auto'"),
    ("memory_check=yes", r"memory_check='yes' is not valid; allowed: true, false"),
    ("compile=1", r"compile=1 is not valid; allowed: true, false"),
    ("extract.shard_size=1.5", r"extract.shard_size=1.5 must be a positive integer"),
    ("extract.prefetch_mb=abc", r"extract.prefetch_mb='abc' must be a finite number > 0"),
    ("extract.lock_timeout=-1", r"extract.lock_timeout=-1 must be a finite number >= 0 or null"),
    ("extract.verify=maybe", r"extract.verify='maybe' is not valid; allowed: true, false"),
    ("bootstrap.resamples=10.5", r"bootstrap.resamples=10.5 must be a positive integer"),
    ("bootstrap.level=abc", r"bootstrap.level='abc' must be in \(0, 1\)"),
    ("bootstrap.seed=[1]", r"bootstrap.seed=\[1\] must be an integer"),
    ("eval=knn eval.k=10", r"eval.k=10 must be a list of positive integers, e.g. eval.k=\[10,"),
    ("eval=knn eval.k=[a]", r"eval.k=\['a'\] must be a list of positive integers"),
    ("eval=knn eval.k=[2.5]", r"eval.k=\[2.5\] must be a list of positive integers"),
    ("eval=knn eval.k=[]", r"eval.k=\[\] must be a list of positive integers"),
    ("eval=knn eval.k=[true]", r"eval.k=\[True\] must be a list of positive integers"),
    ("eval=knn eval.temperature=abc", r"eval.temperature='abc' must be a finite number > 0"),
    ("eval=knn eval.query_chunk=0.5", r"eval.query_chunk=0.5 must be a positive integer"),
    ("eval=fewshot eval.shots=[1.5]", r"eval.shots=\[1.5\] must be a list of positive integers"),
    ("eval=fewshot eval.shots=4", r"eval.shots=4 must be a list of positive integers"),
    ("eval=fewshot eval.seeds=2.5", r"eval.seeds=2.5 must be a positive integer, e.g. 5"),
    ("eval=fewshot eval.seeds=abc", r"eval.seeds='abc' must be a positive integer"),
    ("probe.max_iter=10.5", r"probe.max_iter=10.5 must be a positive integer"),
    ("probe.tol=abc", r"probe.tol='abc' must be a finite number > 0"),
    ("probe.memory=2.5", r"probe.memory=2.5 must be a positive integer"),
    ("probe.stack=maybe", r"probe.stack='maybe' is not valid; allowed: auto, true, false"),
    ("probe.normalize=L2", r"probe.normalize='L2' is not valid; allowed: none, l2"),
    ("dataset.num_classes=2.5", r"dataset.num_classes=2.5 must be a positive integer or 'auto'"),
    ("dataset.val.seed=abc", r"dataset.val.seed='abc' must be an integer"),
    ("dataset.val.fraction=abc", r"dataset.val.fraction='abc' must be in \(0, 1\)"),
    ("encoder.dtype=fp8", r"encoder.dtype='fp8' is not valid; allowed: auto, float32, bfloat16"),
    ("encoder.size=7.5", r"encoder.size=7.5 must be a positive integer or null"),
]


@pytest.mark.parametrize(("override", "message"), BAD)
def test_wrong_value_is_refused_before_anything_is_built(tmp_path: Path, override, message):
    dirs = [f"cache_dir={tmp_path / 'c'}", f"results_dir={tmp_path / 'r'}"]
    with pytest.raises(ProbeError, match=message) as err:
        run(compose_cfg([*dirs, *override.split()]))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "c").exists() and not (tmp_path / "r").exists()


def test_every_shipped_config_passes() -> None:
    """The rules are the configs' own: every file of every group composes to valid values."""
    from conftest import config_names

    from probe.core import params

    for group in ("encoder", "dataset", "probe", "eval"):
        for name in config_names(group):
            params.check(compose_cfg([f"{group}={name}"]))


@pytest.mark.parametrize(
    "line",
    [["batch_size=abc"], ["device=tpu"], ["eval=fewshot", "eval.shots=[1.5]"], ["seed=abc"]],
)
def test_cli_wrong_value_is_one_line_exit_2(tmp_path: Path, line: list[str], caplog) -> None:
    """`python -m probe`'s main, in-process: one line naming the key, exit 2, nothing made
    (the command itself turns a ProbeError into exit 2: test_faults.py's CLI test)."""
    dirs = [f"cache_dir={tmp_path / 'c'}", f"results_dir={tmp_path / 'r'}"]
    assert line[-1].split("=")[0] in main_refuses([*dirs, *line], caplog)
    assert not (tmp_path / "c").exists() and not (tmp_path / "r").exists()


def test_grid_refuses_a_wrong_value_when_composing(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match=r"composing the grid's runs: eval.k=10 must be a list"):
        resolve_runs([["eval=knn", "eval.k=10"]], results_dir=tmp_path)


@pytest.mark.parametrize("where", ["file", "below_a_file"])
def test_results_dir_that_is_a_file(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder")
    results = blocker if where == "file" else blocker / "sub"
    proc = run_cli([f"results_dir={results}", f"cache_dir={tmp_path / 'c'}"], cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert f"results_dir={results}: cannot make the log folder" in out
    assert f"{blocker} is a file, not a directory" in out and "Traceback" not in out
    assert not (tmp_path / "c").exists()  # stopped before anything ran


def test_results_dir_on_a_read_only_disk(tmp_path: Path) -> None:
    mount = tmp_path / "ro"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    if made.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        proc = run_cli([f"results_dir={mount / 'results'}", f"cache_dir={tmp_path / 'c'}"],
                       cwd=tmp_path)  # fmt: skip
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "cannot make the log folder" in out and "Read-only file system" in out
    assert "Traceback" not in out


def test_multirun_sweep_folder_under_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "results.txt"
    blocker.write_text("")
    proc = run_cli(["-m", f"results_dir={blocker}", "seed=0,1"], cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "logs/multirun" in out and "is a file, not a directory" in out
