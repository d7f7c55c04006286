"""SLURM for real: arrays, the stage chain, submitit, bad lines, kills, preemption and requeue.

Every test submits to the session's single-node cluster (tests/slurm_cluster.py: munge,
slurmctld, slurmd from Debian's packages, select/cons_tres, no accounting, no GPUs) the way
a user does, through `sbatch` and the commands `python -m probe.grid` prints. The SLURM
behaviour relied on (scancel's SIGTERM then SIGKILL after KillWait, `--signal`, requeue and
SLURM_RESTART_COUNT, `aftercorr`) is cited in DOCS-18.md and probe/core/preempt.py.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, compose_cfg
from faultkit import entries, finished, shards_done

from probe.launch.resources import TaskResources
from probe.run import run

# one worker runs them all (pytest -n): one cluster per session, not one per worker
pytestmark = pytest.mark.xdist_group("slurm")

SCRIPT = REPO / "slurm" / "probe_array.sbatch"
CPU_FLAGS = " ".join(TaskResources(gpus=0, mem="1G", cpus=1).flags())
# the fault tests' slow stand-in encoder (tests/stubs.py), slowed so a kill lands mid-split:
# digits train is 1,347 rows = 22 shards of 64, about 0.25 s per shard
SLOW = ["encoder._target_=tests.stubs.slow_pixels", "+encoder.delay=0.06", "batch_size=16",
        "extract.shard_size=64", "num_workers=0", "probe.tol=1e-2", "device=cpu"]  # fmt: skip
N_SHARDS = 22
KILL_AT = 6  # shards recorded before a task is ended: 16 more (4 s) are left


def job_env(**extra: str) -> dict[str, str]:
    """What a user's shell exports to sbatch: this checkout on PYTHONPATH, this interpreter."""
    return {"PYTHONPATH": str(REPO), "PROBE_PYTHON": sys.executable, **extra}


def write_grid(tmp: Path, name: str, variants: list[list[str]], overrides: list[str]) -> Path:
    conf = tmp / "conf" / "grid"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / f"{name}.yaml").write_text(json.dumps({
        "name": name, "encoders": ["pixels"], "datasets": ["digits"],
        "variants": variants, "overrides": overrides,
    }))  # fmt: skip
    return tmp / "conf"


def grid_command(slurm, tmp: Path, name: str, *args: str) -> tuple[str, str]:
    """`python -m probe.grid grid=NAME ...` run in `tmp`: (its stdout, the sbatch line)."""
    proc = slurm.run(
        [sys.executable, "-m", "probe.grid", f"grid={name}", f"results_dir={tmp / 'results'}",
         f"hydra.searchpath=[file://{tmp / 'conf'}]",
         f"extra=\"cache_dir={tmp / 'cache'} data_root={tmp / 'data'}\"", *args],
        cwd=tmp, env=job_env(), timeout=120,
    )  # fmt: skip
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("sbatch ")]
    return proc.stdout, (lines[0] if lines else "")


def submit(slurm, command: str, cwd: Path) -> str:
    """Run an sbatch command line as printed (through the shell); the job id it reports."""
    out = slurm.run(command, cwd=cwd, env=job_env()).stdout
    m = re.search(r"Submitted batch job (\d+)", out) or re.fullmatch(r"(\d+)\s*", out)
    assert m, out
    return m.group(1)


def task_log(cwd: Path, job: str, task: int) -> str:
    path = cwd / f"probe-{job}_{task}.out"
    return path.read_text() if path.exists() else ""


def states(tasks: dict[int, dict[str, str]]) -> dict[int, tuple[str, str]]:
    return {i: (t["JobState"], t["ExitCode"]) for i, t in tasks.items()}


def wait_until(cond, *, timeout: float = 90.0, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """An uninterrupted in-process extraction with SLOW's settings (no delay)."""
    tmp = tmp_path_factory.mktemp("ref")
    fast = [a if "encoder.delay" not in a else "+encoder.delay=0" for a in SLOW]
    dirs = [f"cache_dir={tmp / 'cache'}", f"results_dir={tmp}", f"data_root={tmp / 'data'}"]
    run(compose_cfg([*dirs, *fast, "stage=extract"]))
    return finished(tmp / "cache")


def test_printed_array_runs_on_a_cpu_partition_then_resubmission_skips(slurm, tmp_path):
    """The README's flow: probe.grid prints the command, it is run as printed, 3 results;
    the same command again skips all 3. The command is accepted on this GPU-less cluster as
    printed (its defaults: --gres=none, 16G), while the script's own #SBATCH lines are not."""
    variants = [[f"encoder.name=px{s}", f"encoder.size={s}"] for s in (2, 3, 4)]
    write_grid(tmp_path, "tiny", variants, ["probe.max_iter=50"])
    out, command = grid_command(slurm, tmp_path, "tiny", "resources.cpus=1")
    task_file = tmp_path / "results" / "tasks" / "tiny.txt"
    assert command == (f"sbatch --array=1-3%3 --gres=none --mem=16G --cpus-per-task=1 "
                       f"--requeue {SCRIPT} {task_file}"), out  # fmt: skip
    bare = slurm.run(f"sbatch --array=1-3 {SCRIPT} {task_file}", cwd=tmp_path, check=False)
    assert bare.returncode != 0 and "gres" in bare.stderr  # the script alone asks for a GPU
    job = submit(slurm, command, tmp_path)
    assert states(slurm.wait(job)) == {i: ("COMPLETED", "0:0") for i in (1, 2, 3)}
    results = {s: tmp_path / "results" / f"px{s}" / "digits.json" for s in (2, 3, 4)}
    for size, path in results.items():
        assert json.loads(path.read_text())["feature_dim"] == size * size  # grey digits, resized
    stamps = {p: p.stat().st_mtime_ns for p in results.values()}
    again = submit(slurm, command, tmp_path)
    assert states(slurm.wait(again)) == {i: ("COMPLETED", "0:0") for i in (1, 2, 3)}
    for i in (1, 2, 3):
        assert "is done: skipping" in task_log(tmp_path, again, i)
    assert {p: p.stat().st_mtime_ns for p in results.values()} == stamps
    out, command = grid_command(slurm, tmp_path, "tiny", "resources.cpus=1")
    assert "all 3 results exist; nothing to submit" in out and not command


def test_a_bad_line_fails_alone_with_its_error(slurm, tmp_path):
    """An unknown config name: that task fails with the error in its log and no result; the
    next task of the array runs as usual."""
    res = tmp_path / "results"
    common = f"cache_dir={tmp_path / 'cache'} results_dir={res} probe.max_iter=30 encoder.size=2"
    task_file = tmp_path / "tasks.txt"
    bad, good = res / "bad" / "digits.json", res / "pixels" / "digits.json"
    task_file.write_text(
        f"encoder=no_such_encoder dataset=digits {common}  # result: {bad}\n"
        f"encoder=pixels dataset=digits {common}  # result: {good}\n"
    )
    job = submit(slurm, f"sbatch --array=1-2 {CPU_FLAGS} {SCRIPT} {task_file}", tmp_path)
    assert states(slurm.wait(job)) == {1: ("FAILED", "1:0"), 2: ("COMPLETED", "0:0")}
    log = task_log(tmp_path, job, 1)
    assert "Could not find 'encoder/no_such_encoder'" in log and "Traceback" not in log, log
    assert sorted(p.relative_to(res).as_posix() for p in res.rglob("*.json")) == [
        "pixels/digits.json"
    ]


def test_extract_then_probe_chain_with_aftercorr(slurm, tmp_path):
    """PROBE_STAGE=extract, then PROBE_STAGE=probe with --dependency=aftercorr: probe task i
    starts once extract task i succeeded. Extract task 2 is stopped by SIGTERM (exit 143),
    so SLURM counts it failed and its probe task never starts."""
    variants = [["encoder.name=fast", "encoder.size=2"], ["encoder.name=slow", *SLOW]]
    write_grid(tmp_path, "chain", variants, ["probe.max_iter=30"])
    _, command = grid_command(slurm, tmp_path, "chain", "resources.cpus=1", "resources.mem=1G")
    first = "sbatch --parsable --export=ALL,PROBE_STAGE=extract "
    extract = submit(slurm, command.replace("sbatch ", first, 1), tmp_path)
    then = f"sbatch --parsable --dependency=aftercorr:{extract} --export=ALL,PROBE_STAGE=probe "
    probe = submit(slurm, command.replace("sbatch ", then, 1), tmp_path)
    wait_until(lambda: _progress(tmp_path, "slow") >= 2, what="extract task 2 mid-split")
    slurm.run(["scancel", "--full", "--signal=TERM", f"{extract}_2"])  # a signal, no cancel
    assert states(slurm.wait(extract)) == {1: ("COMPLETED", "0:0"), 2: ("FAILED", "143:0")}
    assert "preempted (SIGTERM)" in task_log(tmp_path, extract, 2)
    wait_until(lambda: slurm.tasks(probe)[1]["JobState"] == "COMPLETED", what="probe task 1")
    wait_until(lambda: slurm.tasks(probe)[2]["Reason"] == "DependencyNeverSatisfied",
               what="probe task 2 to be marked as never starting")  # fmt: skip
    assert json.loads((tmp_path / "results" / "fast" / "digits.json").read_text())["score"] > 0
    assert not (tmp_path / "results" / "slow").exists()
    assert "features cached for all splits" in task_log(tmp_path, probe, 1)


def test_submitit_sweep_on_slurm(slurm, tmp_path):
    """`python -m probe -m hydra/launcher=slurm`: one SLURM job per run, each its own dirs."""
    args = [
        "-m", "probe", "-m", "hydra/launcher=slurm", "dataset.name=da,db", "encoder.size=2",
        "probe.max_iter=30", f"results_dir={tmp_path / 'results'}",
        f"cache_dir={tmp_path / 'cache'}", "hydra.launcher.gpus_per_node=null",
        "hydra.launcher.mem_gb=1", "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.timeout_min=10",
    ]  # fmt: skip
    proc = slurm.run([sys.executable, *args], cwd=tmp_path, env=job_env(), timeout=240)
    for ds in ("da", "db"):
        record = json.loads((tmp_path / "results" / "pixels" / f"{ds}.json").read_text())
        assert record["dataset"] == ds and record["feature_dim"] == 4
    (sweep,) = (tmp_path / "results" / "logs" / "multirun").iterdir()
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name[0] != ".")
    assert jobs == ["0_pixels_da", "1_pixels_db"], proc.stdout
    tasks = sorted(p.name for p in (sweep / ".submitit").iterdir() if p.name[0] != ".")
    assert re.fullmatch(r"(\d+) \1_0 \1_1", " ".join(tasks)), tasks  # one SLURM array, 2 tasks


def _started(slurm, tmp: Path, grid: str, names: list[str]) -> tuple[str, str]:
    """Submit a grid of slow extractions (one run per name) as printed; (command, job id)."""
    write_grid(tmp, grid, [[f"encoder.name={n}"] for n in names], SLOW)
    _, command = grid_command(slurm, tmp, grid, "resources.cpus=1", "resources.mem=1G")
    assert "--gres=none" in command and "--requeue" in command
    return command, submit(slurm, command, tmp)


def _progress(tmp: Path, name: str) -> int:
    return shards_done(tmp / "cache" / name, "train")


def _act_at(slurm, tmp: Path, todo: dict[str, list[str]]) -> bool:
    """Run each task's command once it has KILL_AT shards (tasks start at different times)."""
    for name in [n for n in todo if _progress(tmp, n) >= KILL_AT]:
        slurm.run(todo.pop(name))
    return not todo


def _same_features(tmp: Path, name: str, reference: dict) -> None:
    got = finished(tmp / "cache" / name)
    assert set(got) == set(reference)
    for split, (feats, labels) in reference.items():
        assert got[split][0] == feats, f"{name}/{split}: features differ from an uninterrupted run"
        assert (got[split][1] == labels).all()


def test_killed_cancelled_and_requeued_tasks_resume_bit_identical(slurm, tmp_path, reference):
    """Four ways a task ends mid-split, each leaving a resumable entry; every run finishes
    bit-identical to an uninterrupted one. An array of three slow extractions:

    1. `scancel --batch --signal=KILL`: SIGKILL to the batch step only (the job is not
       cancelled): the run dies without a word.
    2. `scancel --signal=KILL`: in SLURM 22.05 the very request of a plain `scancel` (SIGKILL
       is how scancel asks slurmctld to cancel: src/scancel/scancel.c `_cancel_job_id`), so
       the run gets SIGCONT and SIGTERM, and SIGKILL only after KillWait.
    3. `scancel`: SIGTERM, SIGKILL after KillWait (scancel(1)); the run stops at a shard
       boundary, logs that it was preempted and exits 143 before KillWait is up.
    Resubmitting that array as printed finishes all three. Beside it, a one-task array
    (submitted with --requeue, as printed) is requeued with `scontrol requeue`: the same
    SIGTERM, then SLURM starts the script again (SLURM_RESTART_COUNT=1) and the run resumes
    from its recorded shards instead of starting over.
    """
    names = ["hardkilled", "killsignalled", "cancelled"]
    command, job = _started(slurm, tmp_path, "slow", names)
    _, requeued = _started(slurm, tmp_path, "requeue", ["requeued"])
    todo = {
        "hardkilled": ["scancel", "--batch", "--signal=KILL", f"{job}_1"],
        "killsignalled": ["scancel", "--signal=KILL", f"{job}_2"],
        "cancelled": ["scancel", f"{job}_3"],
        "requeued": ["scontrol", "requeue", f"{requeued}_1"],
    }
    wait_until(lambda: _act_at(slurm, tmp_path, todo), what=f"each task {KILL_AT} shards in")
    # 1 was killed by signal 9; 2 and 3 exited 143 themselves, at a shard boundary
    assert states(slurm.wait(job)) == {1: ("FAILED", "0:9"), 2: ("CANCELLED", "143:0"),
                                       3: ("CANCELLED", "143:0")}  # fmt: skip
    logs = {i: task_log(tmp_path, job, i) for i in (1, 2, 3)}
    assert "preempted" not in logs[1] and "Traceback" not in logs[1]  # SIGKILL: no last word
    assert "preempted (SIGTERM)" in logs[2] and "preempted (SIGTERM)" in logs[3], logs
    kept = {}
    for name in names:
        [entry] = entries(tmp_path / "cache" / name, "train")
        assert not (entry / "meta.json").exists() and not (tmp_path / "results" / name).exists()
        kept[name] = _progress(tmp_path, name)
        assert KILL_AT <= kept[name] < N_SHARDS
    again = submit(slurm, command, tmp_path)  # while the requeued task waits to restart
    assert states(slurm.wait(again)) == {i: ("COMPLETED", "0:0") for i in (1, 2, 3)}
    for task, name in enumerate(names, 1):
        log = task_log(tmp_path, again, task)
        assert f"resuming, {kept[name]} of {N_SHARDS} shards already written" in log, log
    final = slurm.wait(requeued, timeout=180)  # the requeue delay is cred_expire + 1 s
    assert states(final) == {1: ("COMPLETED", "0:0")} and final[1]["Restarts"] == "1"
    log = task_log(tmp_path, requeued, 1)  # --open-mode=append: both runs in one log
    first, second = log.split("(restart 1)")
    m = re.search(r"stopped at a shard boundary, after recording rows \d+-(\d+)", first)
    assert m and "preempted (SIGTERM)" in first, log
    kept["requeued"] = (int(m.group(1)) + 1) // 64
    assert kept["requeued"] >= KILL_AT
    assert f"resuming, {kept['requeued']} of {N_SHARDS} shards already written" in second
    for name in [*names, "requeued"]:
        _same_features(tmp_path, name, reference)
        assert json.loads((tmp_path / "results" / name / "digits.json").read_text())["score"] > 0
