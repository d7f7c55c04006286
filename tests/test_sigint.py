"""Ctrl-C (SIGINT) stops a run as SIGTERM does (tests/test_preempt.py): at the next shard
boundary during extraction, at once elsewhere, one line, no traceback, nothing half-written
left as finished, exit 130 (128 + SIGINT)."""

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
from test_preempt import FAST, dirs_in

from probe.core import preempt
from probe.run import run

EXIT = 128 + int(signal.SIGINT)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("ref")
    run(compose_cfg([*dirs_in(tmp), *FAST, "stage=extract"]))
    return {"cache": tmp / "cache", "arrays": finished(tmp / "cache")}


def test_ctrl_c_mid_extraction_stops_at_a_shard_boundary(tmp_path: Path, reference) -> None:
    cache = tmp_path / "cache"
    proc = popen([*dirs_in(tmp_path), *SLOW, "stage=extract"], cwd=tmp_path)
    assert wait_for(lambda: shards_done(cache, "train") >= 3, proc=proc), output(proc)
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == EXIT == 130, output(proc)
    log = output(proc)
    stopped = (r"interrupted \(SIGINT\): pixels/digits/train: stopped at a shard boundary, "
               r"after recording rows \d+-\d+ \(shard \d+\).*\(exit 130\)")  # fmt: skip
    assert re.search(stopped, log), log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log
    [entry] = entries(cache, "train")
    assert not (entry / "meta.json").exists()
    with undelayed():
        run(compose_cfg([*dirs_in(tmp_path), *SLOW, "stage=extract"]))  # resumes
    got = finished(cache)
    for split, (feats, labels) in reference["arrays"].items():
        assert got[split][0] == feats and np.array_equal(got[split][1], labels)


def test_ctrl_c_during_the_probe_leaves_no_result(tmp_path: Path, reference) -> None:
    shutil.copytree(reference["cache"], tmp_path / "cache")
    args = [*dirs_in(tmp_path), *FAST, "probe=sklearn", "probe.tol=1e-6", "stage=probe"]
    proc = popen(args, cwd=tmp_path)
    assert wait_for(lambda: "features cached for all splits" in output(proc), proc=proc)
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == EXIT, output(proc)
    assert re.search(r"interrupted \(SIGINT\): (SIGINT received|stopped during the C search)",
                     output(proc)), output(proc)  # fmt: skip
    assert "Traceback" not in output(proc)
    results = tmp_path / "results"
    assert not [p for p in results.rglob("*") if p.is_file() and "logs" not in p.parts]


def test_deferred_ctrl_c_waits_for_the_checkpoint_and_both_handlers_come_back() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(SystemExit) as stop:
        with preempt.exit_on_preemption(logging.getLogger("t")):
            with preempt.deferred("the split"):
                os.kill(os.getpid(), signal.SIGINT)
                assert preempt.requested()  # still running: no KeyboardInterrupt
                preempt.checkpoint("shard 3")
    assert stop.value.code == EXIT
    assert {s: signal.getsignal(s) for s in before} == before
    assert not preempt.requested()


def test_sigterm_after_ctrl_c_keeps_the_first_signals_exit_code() -> None:
    with pytest.raises(SystemExit) as stop:
        with preempt.exit_on_preemption(logging.getLogger("t")):
            with preempt.deferred("the split"):
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGTERM)
    assert stop.value.code == EXIT
