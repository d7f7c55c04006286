"""The fault-injection suite: kills, corrupted caches, bad encoders, full and read-only disks.

Every test injects one fault and checks the harness survives it: either the same numbers as a
clean run, or a clear error naming the path, with nothing partial left or used.
"""

from __future__ import annotations

import contextlib
import errno
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_cfg
from faultkit import (
    SLOW,
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
from probe.report.record import REQUIRED_FIELDS
from probe.run import run

SEEDS = [0, 1, 2]


def dirs_in(tmp: Path, cache: Path | None = None) -> list[str]:
    return [f"cache_dir={cache or tmp / 'cache'}", f"results_dir={tmp / 'results'}",
            f"data_root={tmp / 'data'}"]  # fmt: skip


def same_result(a: dict, b: dict) -> bool:
    keys = ("score", "C", "search", "n_train", "n_val", "n_test", "feature_dim")
    return all(a[k] == b[k] for k in keys)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict:
    """One clean run of the slow stub's settings: its cache, arrays and result."""
    tmp = tmp_path_factory.mktemp("clean")
    with undelayed():
        record = run(compose_cfg([*dirs_in(tmp), *SLOW]))
    return {"cache": tmp / "cache", "arrays": finished(tmp / "cache"), "record": record}


def copied_cache(clean: dict, tmp: Path) -> Path:
    shutil.copytree(clean["cache"], tmp / "cache")
    return tmp / "cache"


@pytest.mark.parametrize("seed", SEEDS)
def test_sigkill_at_a_random_point_of_extraction(tmp_path: Path, clean, seed: int) -> None:
    rng = random.Random(seed)
    cache = tmp_path / "cache"
    proc = popen([*dirs_in(tmp_path), *SLOW, "stage=extract"], cwd=tmp_path)
    assert wait_for(lambda: shards_done(cache, "train") >= 1, proc=proc), output(proc)
    time.sleep(rng.uniform(0.0, 3.5))  # anywhere from the first shard to after the test split
    sigkill(proc)
    for split, (feats, labels) in finished(cache).items():  # meta.json only when all is there
        assert feats == clean["arrays"][split][0] and np.array_equal(
            labels, clean["arrays"][split][1]
        )
    with undelayed():  # the resume, in-process
        record = run(compose_cfg([*dirs_in(tmp_path), *SLOW]))
    got = finished(cache)
    assert {s: v[0] for s, v in got.items()} == {s: v[0] for s, v in clean["arrays"].items()}
    assert same_result(record, clean["record"])


_WRITER = """
import sys
from probe.core.io import write_json_atomic
path = sys.argv[1]
records = [{"v": v, "rows": [v] * 200000} for v in ("a", "b")]
print("ready", flush=True)
i = 0
while True:
    write_json_atomic(path, records[i % 2]); i += 1
"""


@pytest.mark.parametrize("seed", SEEDS)
def test_sigkill_while_writing_json_leaves_old_or_new(tmp_path: Path, seed: int) -> None:
    target = tmp_path / "r.json"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], env=env(),
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(random.Random(seed).uniform(0.2, 1.5))
    sigkill(proc)
    data = json.loads(target.read_text())
    assert data["v"] in ("a", "b") and data["rows"] == [data["v"]] * 200000
    from probe.core.io import write_json_atomic

    write_json_atomic(target, {"v": "c"})  # the next write sweeps the dead writer's temp file
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_sigkill_during_the_probe_and_result_write(tmp_path: Path, clean, seed: int) -> None:
    cache = copied_cache(clean, tmp_path)
    proc = popen(dirs_in(tmp_path, cache) + SLOW, cwd=tmp_path)
    result = tmp_path / "results" / "pixels" / "digits.json"
    time.sleep(random.Random(seed).uniform(1.0, 8.0))
    sigkill(proc)
    if result.exists():  # finished before the kill: then it is whole
        assert set(REQUIRED_FIELDS) <= set(json.loads(result.read_text()))
    record = run(compose_cfg(dirs_in(tmp_path, cache) + SLOW))
    assert record["seconds"]["extract"] == 0.0 and same_result(record, clean["record"])
    assert same_result(json.loads(result.read_text()), clean["record"])


def _train_entry(cache: Path) -> Path:
    [entry] = entries(cache, "train")
    return entry


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x40]))


@pytest.mark.parametrize(
    ("damage", "expect"),
    [
        ("flip_features", "checksum mismatch in rows 640-703"),
        ("flip_labels", "checksum mismatch in labels.npy"),
        ("truncate_features", "unreadable or truncated"),
        ("pickled_labels", "unreadable or truncated"),
    ],
)
def test_damaged_entry_detected_then_rebuilt(tmp_path: Path, clean, damage: str, expect: str):
    cache = copied_cache(clean, tmp_path)
    entry = _train_entry(cache)
    feats = entry / "features.npy"
    marker = tmp_path / "unpickled"
    if damage == "flip_features":
        _flip(feats, 128 + 700 * 64 * 4 + 5)
    elif damage == "flip_labels":
        _flip(entry / "labels.npy", 128 + 8 * 10)
    elif damage == "truncate_features":
        with open(feats, "r+b") as fh:
            fh.truncate(feats.stat().st_size - 4096)
    else:
        np.save(entry / "labels.npy", np.array([_Boom(marker)] * 1347, dtype=object))
    with pytest.raises(ProbeError, match=expect):
        run(compose_cfg([*dirs_in(tmp_path), *SLOW, "stage=probe"]))
    with undelayed():  # the rebuild
        record = run(compose_cfg([*dirs_in(tmp_path), *SLOW]))
    assert record["seconds"]["extract"] > 0 and same_result(record, clean["record"])
    assert finished(cache)["train"][0] == clean["arrays"]["train"][0]
    assert not marker.exists(), "a cached file was unpickled"


class _Boom:
    """Unpickling this creates a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_nan_encoder_fails_naming_encoder_split_and_row(tmp_path: Path) -> None:
    args = [*dirs_in(tmp_path), "encoder._target_=tests.stubs.nan_pixels", "batch_size=16"]
    with pytest.raises(ProbeError, match=r"pixels/digits/train: .*NaN.*first bad row 3"):
        run(compose_cfg(args))
    assert not list((tmp_path / "cache").rglob("meta.json"))
    assert not (tmp_path / "results" / "pixels").exists()


def test_max_iter_1_is_flagged_not_passed(tmp_path: Path, clean, caplog) -> None:
    cache = copied_cache(clean, tmp_path)
    caplog.set_level("WARNING")
    record = run(compose_cfg([*dirs_in(tmp_path, cache), *SLOW, "probe.max_iter=1"]))
    search = record["search"]
    assert record["converged"] is False and all(r["iterations"] <= 1 for r in search)
    # the strongest regularisation meets the rule within one iteration; the rest cannot
    assert sum(not r["converged"] for r in search) >= len(search) // 2
    saved = json.loads((tmp_path / "results" / "pixels" / "digits.json").read_text())
    assert saved["converged"] is False and saved["final_fit"]["converged"] is False
    assert "did not converge within probe.max_iter=1" in caplog.text
    assert clean["record"]["converged"] is True


@contextlib.contextmanager
def small_fs(path: Path, *, size: str, readonly: bool = False):
    """A size-limited (or read-only) tmpfs at `path` when this machine lets us mount one."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                          capture_output=True)  # fmt: skip
    if proc.returncode != 0:
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(path: Path) -> None:
    with open(path / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC


def _left_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_full_disk_for_the_cache(tmp_path: Path, monkeypatch) -> None:
    with small_fs(tmp_path / "fs", size="256k") as fs:
        if fs is None:  # no mount here: the same failure, patched in
            fs = tmp_path / "fs"

            def full(fd, offset, length):
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr("os.posix_fallocate", full)
        with pytest.raises(ProbeError, match=r"features\.npy: No space left on device.*disk is"):
            run(compose_cfg(dirs_in(tmp_path, fs / "cache")))
        assert all(n.endswith(".lock") for n in _left_files(fs)), _left_files(fs)


def test_full_disk_for_results(tmp_path: Path, clean) -> None:
    cache = copied_cache(clean, tmp_path)
    with small_fs(tmp_path / "results", size="64k") as fs:
        if fs is None:
            pytest.skip("cannot mount a small tmpfs here")
        _fill(fs)
        # the head (.npz) is written first, so a result never points to a missing one
        with pytest.raises(ProbeError, match=r"digits\.npz: No space left on device"):
            run(compose_cfg(dirs_in(tmp_path, cache) + SLOW))
        assert _left_files(fs) == ["filler"]


def test_read_only_results_dir(tmp_path: Path, clean) -> None:
    cache = copied_cache(clean, tmp_path)
    with small_fs(tmp_path / "results", size="64k", readonly=True) as fs:
        if fs is None:
            pytest.skip("cannot mount a read-only tmpfs here")
        with pytest.raises(ProbeError, match=r"results/pixels.*[Rr]ead-only file system"):
            run(compose_cfg(dirs_in(tmp_path, cache) + SLOW))
        assert _left_files(fs) == []


def test_cli_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    proc = popen([*dirs_in(tmp_path), "encoder._target_=tests.stubs.nan_pixels"], cwd=tmp_path)
    assert proc.wait(timeout=300) == 2
    out = output(proc)
    assert "first bad row" in out and "Traceback" not in out


def test_verify_false_skips_only_the_checksum(tmp_path: Path, clean) -> None:
    """extract.verify=false trusts the bytes, never the shapes: truncation is still caught."""
    cache = copied_cache(clean, tmp_path)
    feats = _train_entry(cache) / "features.npy"
    with open(feats, "r+b") as fh:
        fh.truncate(feats.stat().st_size - 256)
    with pytest.raises(ProbeError, match="unreadable or truncated"):
        run(compose_cfg([*dirs_in(tmp_path), *SLOW, "stage=probe", "extract.verify=false"]))
