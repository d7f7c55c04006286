"""SIGTERM, as SLURM sends it on scancel, preemption, requeue and the time limit (no SLURM here:
tests/test_slurm.py sends it through a real cluster).

The run stops at the next shard boundary during extraction and at once elsewhere, logs that
it was preempted, leaves nothing half-written and exits 143.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_cfg
from faultkit import SLOW, entries, finished, output, popen, shards_done, undelayed, wait_for

from probe.core import preempt
from probe.run import run


def dirs_in(tmp: Path) -> list[str]:
    return [f"cache_dir={tmp / 'cache'}", f"results_dir={tmp / 'results'}",
            f"data_root={tmp / 'data'}"]  # fmt: skip


FAST = [a if not a.startswith("+encoder.delay") else "+encoder.delay=0" for a in SLOW]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """An uninterrupted extraction with the slow stub's settings (no delay): cache and arrays."""
    tmp = tmp_path_factory.mktemp("ref")
    run(compose_cfg([*dirs_in(tmp), *FAST, "stage=extract"]))
    return {"cache": tmp / "cache", "arrays": finished(tmp / "cache")}


def test_sigterm_mid_extraction_stops_at_a_shard_boundary(tmp_path: Path, reference, caplog):
    cache = tmp_path / "cache"
    proc = popen([*dirs_in(tmp_path), *SLOW, "stage=extract"], cwd=tmp_path)
    assert wait_for(lambda: shards_done(cache, "train") >= 3, proc=proc), output(proc)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == preempt.EXIT_CODE == 143, output(proc)
    log = output(proc)
    m = re.search(r"preempted \(SIGTERM\): pixels/digits/train: stopped at a shard boundary, "
                  r"after recording rows \d+-(\d+) \(shard (\d+)\)", log)  # fmt: skip
    assert m, log
    assert "Traceback" not in log
    [entry] = entries(cache, "train")
    kept = shards_done(cache, "train")  # the shard it stopped after is the last one recorded
    assert kept == int(m.group(2)) + 1 == (int(m.group(1)) + 1) // 64
    assert not (entry / "meta.json").exists()
    caplog.set_level("INFO")
    with undelayed():  # the resume, in-process
        run(compose_cfg([*dirs_in(tmp_path), *SLOW, "stage=extract"]))
    assert f"resuming, {kept} of 22 shards already written" in caplog.text
    got = finished(cache)
    for split, (feats, labels) in reference["arrays"].items():
        assert got[split][0] == feats, f"{split}: resumed features differ from an uninterrupted run"
        assert np.array_equal(got[split][1], labels)


def test_sigterm_during_the_probe_leaves_no_result(tmp_path: Path, reference) -> None:
    """The probe stage stops at once, or at the latest after the search step under way (a
    stop raised where Python drops it, seen under load): no result file, no temp file, 143."""
    shutil.copytree(reference["cache"], tmp_path / "cache")
    args = [*dirs_in(tmp_path), *FAST, "probe=sklearn", "probe.tol=1e-6", "stage=probe"]
    proc = popen(args, cwd=tmp_path)
    assert wait_for(lambda: "features cached for all splits" in output(proc), proc=proc)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 143, output(proc)
    assert re.search(r"preempted \(SIGTERM\): (SIGTERM received|stopped during the C search)",
                     output(proc)), output(proc)  # fmt: skip
    results = tmp_path / "results"
    assert not [p for p in results.rglob("*") if p.is_file() and "logs" not in p.parts]


def test_deferred_sigterm_waits_for_the_checkpoint() -> None:
    """Inside `deferred` the signal only sets the flag; the next checkpoint raises."""
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop:
        with preempt.exit_on_preemption(logging.getLogger("t")):
            with preempt.deferred("the split"):
                os.kill(os.getpid(), signal.SIGTERM)
                assert preempt.requested()  # still running: no exception yet
                preempt.checkpoint("shard 3")
    assert stop.value.code == 143
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
    assert not preempt.requested()


class _SignalInFinalizer:
    """SIGTERM delivered while Python runs a finalizer (tqdm's and others' `__del__`): the
    handler's raise happens inside it, and Python prints and drops it."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_stop_lost_in_a_finalizer_still_stops_the_search(caplog) -> None:
    """Seen under load: the probe ran to its result and exited 0 after SIGTERM. The search
    checkpoints after each batch of fits, so the flag the handler set still stops it."""
    from sklearn.datasets import load_digits

    from probe.evaluations.linear import search
    from probe.solvers.torch_solver import TorchSolver

    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    with pytest.raises(SystemExit) as stop:
        with preempt.exit_on_preemption(logging.getLogger("t")):
            _SignalInFinalizer()  # dropped at once: the Preempted raised in __del__ is lost
            assert preempt.requested()
            search(solver=TorchSolver(max_iter=5), train=(X[:300], y[:300]),
                   val=(X[300:400], y[300:400]), num_classes=10, metric="top1")  # fmt: skip
    assert stop.value.code == 143
    assert "stopped during the C search" in caplog.text
