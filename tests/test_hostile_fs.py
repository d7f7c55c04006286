"""Hostile file trees and names (issue 24): every walk ends and lists each file once, an input
is known by what it is and not by the name it is reached through, and no name puts a file
outside the folders the user gave.

Each test builds the hostile shape for real (symlinks, hard links, FIFOs, re-pointed links,
names with `..`) and checks the harness either does the right thing or stops with one line
naming the bad value; a walk that could hang runs in a subprocess with a time limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import fakes
import numpy as np
import pytest
from conftest import REPO, compose_cfg, run_cli
from test_npz import features, write

from probe.core.errors import ProbeError
from probe.features.cache import fingerprint
from probe.run import run

# --- 1. symlink loops and second names: each walk ends, each file once ----------------------

_BUILD = """
import json, sys
from conftest import compose_cfg
from probe.core.factory import make
ds = make(compose_cfg(["dataset=imagefolder", "dataset.root=" + sys.argv[1]]).dataset)
print(json.dumps({s: list(v.ids) for s, v in ds.splits.items()}))
"""


def build_folders(root: Path, *, timeout: float = 60.0) -> dict | str:
    """The image-folder dataset at `root`, built in a subprocess: split -> ids, or the error."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    try:
        proc = subprocess.run([sys.executable, "-c", _BUILD, str(root)], capture_output=True,
                              text=True, env=env, timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"listing {root} did not end within {timeout:.0f} s (a symlink loop?)")
    if proc.returncode != 0:
        return proc.stderr.strip().splitlines()[-1]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, dict]:
    """An image-folder dataset (train/val/test of 3 classes) and its ids without any link
    (listed in-process, as `_BUILD` lists it: a tree without links cannot hang a walk)."""
    from probe.core.factory import make

    fakes.make("imagefolder", tmp_path / "data")
    root = tmp_path / "data" / "folders"
    ds = make(compose_cfg(["dataset=imagefolder", f"dataset.root={root}"]).dataset)
    return root, json.loads(json.dumps({s: list(v.ids) for s, v in ds.splits.items()}))


LOOPS = {
    "link to . in a class folder": [("train/ant/self", ".")],
    "two links to .": [("train/ant/self", "."), ("train/ant/again", ".")],
    "link to .. (the split)": [("train/bee/up", "..")],
    "link to the dataset root": [("train/bee/root", "../..")],
    "a link in every split": [(f"{s}/ant/self", ".") for s in ("train", "val", "test")],
    "two folders linking each other": [("train/ant/sub", "sub2"), ("train/ant/sub2", "sub")],
    "a loop two levels down": [("train/ant/deep", "."), ("train/ant/deep2", "deep")],
}


@pytest.mark.parametrize("links", list(LOOPS.values()), ids=list(LOOPS))
def test_symlink_loops_end_and_list_each_image_once(folders, links) -> None:
    root, clean = folders
    for name, target in links:
        if target.startswith("sub"):  # a pair of real folders that link into each other
            (root / name).mkdir()
            fakes.write_image(root / name / f"{name.rsplit('/', 1)[1]}.png", 3)
            os.symlink(f"../{target}", root / name / "back")
            continue
        os.symlink(target, root / name)
    extra = [f"{n}/{n.rsplit('/', 1)[1]}.png" for n, target in links if target.startswith("sub")]
    want = {s: sorted(ids + [e for e in extra if e.startswith(s)]) for s, ids in clean.items()}
    assert {s: sorted(ids) for s, ids in build_folders(root).items()} == want


def test_a_linked_folder_outside_the_tree_is_followed_once(folders, tmp_path: Path) -> None:
    """A link is followed (data spread over disks); two links to one folder count it once."""
    root, clean = folders
    extra = tmp_path / "elsewhere"
    extra.mkdir()
    fakes.write_image(extra / "more.png", 77)
    os.symlink(extra, root / "train" / "ant" / "more")
    os.symlink(extra, root / "train" / "ant" / "more_again")
    got = build_folders(root)
    assert got["train"] == sorted(clean["train"] + ["train/ant/more/more.png"])


def test_second_names_of_one_image_are_listed_once(folders) -> None:
    root, clean = folders
    ant = root / "train" / "ant"
    first = sorted(ant.glob("*.png"))[0]
    os.symlink(first.name, ant / "zz_link.png")
    os.link(first, ant / "zz_hard.png")
    assert build_folders(root) == clean


def test_one_image_in_two_classes_or_two_splits_is_refused(folders) -> None:
    root, _ = folders
    os.symlink("../ant", root / "train" / "bee" / "ants")
    assert "are one file (a link) in two class folders" in build_folders(root)
    os.unlink(root / "train" / "bee" / "ants")
    os.symlink("../../train/ant", root / "test" / "ant" / "leak")
    msg = build_folders(root)
    assert "(train) and " in msg and "(test) are one file, in two splits" in msg


def test_a_fifo_among_the_images_is_refused_not_opened(folders) -> None:
    root, _ = folders
    os.mkfifo(root / "train" / "ant" / "pipe.png")
    assert "pipe.png is not a regular file" in build_folders(root, timeout=30)


def test_a_model_directory_with_links_is_stamped_file_by_file(tmp_path: Path) -> None:
    """The stamp of a local model walks into a linked sub-folder (once, loops skipped), so a
    weight changed there is a new fingerprint."""
    model, shards = tmp_path / "model", tmp_path / "shards"
    model.mkdir()
    shards.mkdir()
    (model / "config.json").write_text("{}")
    (shards / "w.bin").write_bytes(b"a" * 64)
    os.symlink(shards, model / "weights")
    os.symlink(".", model / "self")

    def fp() -> dict:
        enc = {"name": "hf", "model": str(model)}
        return fingerprint(encoder=enc, dataset={"name": "d"}, split="train", dtype="float32")

    before = fp()
    (shards / "w.bin").write_bytes(b"b" * 65)
    assert fp() != before


# --- 2. an input is what it is, not the name it is reached through ----------------------------


def npz_run(tmp_path: Path, path: Path | str, *extra: str) -> list[str]:
    return [f"cache_dir={tmp_path / 'cache'}", f"results_dir={tmp_path / 'results'}",
            "encoder=precomputed", "dataset=npz", f"dataset.path={path}", "probe.max_iter=30",
            *extra]  # fmt: skip


@pytest.fixture
def two_files(tmp_path: Path) -> tuple[Path, Path]:
    """Two different feature files: `b` has other training rows than `a`."""
    a = write(tmp_path / "a.npz")
    x, y = features(300, seed=7, shift=4.0)
    return a, write(tmp_path / "b.npz", x_train=x, y_train=(y + 1) % 3)


def test_a_repointed_link_is_never_probed_from_the_old_files_cache(tmp_path, two_files) -> None:
    a, b = two_files
    link = tmp_path / "current.npz"
    os.symlink(a, link)
    run(compose_cfg(npz_run(tmp_path, link)))
    os.unlink(link)
    os.symlink(b, link)
    with pytest.raises(ProbeError, match="dataset samples or labels changed"):
        run(compose_cfg(npz_run(tmp_path, link, "stage=probe")))
    fresh = run(compose_cfg(npz_run(tmp_path, b)))
    assert run(compose_cfg(npz_run(tmp_path, link)))["score"] == fresh["score"]


def test_a_relative_path_from_another_directory_is_another_file(
    tmp_path, two_files, monkeypatch
) -> None:
    a, b = two_files
    for folder, source in (("one", a), ("two", b)):
        (tmp_path / folder).mkdir()
        os.link(source, tmp_path / folder / "feats.npz")
    monkeypatch.chdir(tmp_path / "one")
    run(compose_cfg(npz_run(tmp_path, "feats.npz")))
    monkeypatch.chdir(tmp_path / "two")
    with pytest.raises(ProbeError, match="dataset samples or labels changed"):
        run(compose_cfg(npz_run(tmp_path, "feats.npz", "stage=probe")))
    monkeypatch.chdir(tmp_path)  # gone from here: the cache is all the probe needs
    probed = run(compose_cfg(npz_run(tmp_path, "feats.npz", "stage=probe")))
    assert probed["n_train"] + probed["n_val"] == 300


def test_a_file_rewritten_with_its_old_size_and_times_is_caught(tmp_path, two_files) -> None:
    a, b = two_files
    target = tmp_path / "feats.npz"
    target.write_bytes(a.read_bytes())
    run(compose_cfg(npz_run(tmp_path, target)))
    st = target.stat()
    assert st.st_size == b.stat().st_size
    target.write_bytes(b.read_bytes())  # in place: same inode, size; the times put back
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ProbeError, match="dataset samples or labels changed"):
        run(compose_cfg(npz_run(tmp_path, target, "stage=probe")))


def test_a_link_to_a_copy_of_the_same_file_still_probes(tmp_path, two_files) -> None:
    a, _ = two_files
    copy = tmp_path / "copy.npz"
    copy.write_bytes(a.read_bytes())
    link = tmp_path / "current.npz"
    os.symlink(a, link)
    first = run(compose_cfg(npz_run(tmp_path, link)))
    os.unlink(link)
    os.symlink(copy, link)
    assert run(compose_cfg(npz_run(tmp_path, link, "stage=probe")))["score"] == first["score"]


def _twin_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """Two model folders with the same file names, sizes and times, but other weights."""
    out = []
    for name, fill in (("v1", b"a"), ("v2", b"b")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(fill * 128)
        os.utime(folder / "model.safetensors", ns=(10**18, 10**18))
        out.append(folder)
    return out[0], out[1]


@pytest.mark.parametrize("key", ["model", "checkpoint"])
def test_a_repointed_model_or_checkpoint_link_is_another_fingerprint(tmp_path, key) -> None:
    v1, v2 = _twin_dirs(tmp_path)
    link = tmp_path / "current"

    def fp(target: Path) -> dict:
        if link.is_symlink():
            link.unlink()
        os.symlink(target, link)
        where = link if key == "model" else link / "model.safetensors"
        enc = {"name": "m", "model": "timm_arch", key: str(where)}
        return fingerprint(encoder=enc, dataset={"name": "d"}, split="train", dtype="float32")

    assert fp(v1) == fp(v1) and fp(v1) != fp(v2)


def test_a_relative_model_path_from_another_directory_is_another_fingerprint(
    tmp_path, monkeypatch
) -> None:
    v1, v2 = _twin_dirs(tmp_path)
    enc = {"name": "hf", "model": "weights"}
    fps = []
    for folder in (v1, v2):
        (tmp_path / f"cwd_{folder.name}").mkdir()
        os.symlink(folder, tmp_path / f"cwd_{folder.name}" / "weights")
        monkeypatch.chdir(tmp_path / f"cwd_{folder.name}")
        fps.append(fingerprint(encoder=enc, dataset={"name": "d"}, split="t", dtype="float32"))
    assert fps[0] != fps[1]


def test_a_repointed_dataset_root_link_is_another_fingerprint(tmp_path: Path) -> None:
    """dataset.root counts by its real path (held before issue 24; kept)."""
    v1, v2 = _twin_dirs(tmp_path)
    link = tmp_path / "data_link"
    fps = []
    for target in (v1, v2):
        if link.is_symlink():
            link.unlink()
        os.symlink(target, link)
        ds = {"name": "imagefolder", "root": str(link)}
        fps.append(fingerprint(encoder={"name": "e"}, dataset=ds, split="t", dtype="float32"))
    assert fps[0] != fps[1]


# --- 5. names that become path components ---------------------------------------------------

BAD_NAMES = ["../../escaped", "../x", "a/b", "..", ".", ".hidden", "", "ABS"]


def _deep(tmp_path: Path) -> Path:
    """A working folder deep enough that `..` names still land inside tmp_path."""
    here = tmp_path / "a" / "b" / "c" / "d"
    here.mkdir(parents=True)
    return here


def _files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


@pytest.mark.parametrize("key", ["dataset.name", "encoder.name"])
@pytest.mark.parametrize("value", BAD_NAMES)
def test_a_name_that_would_leave_its_folder_is_refused_before_any_write(tmp_path, key, value):
    here = _deep(tmp_path)
    value = str(tmp_path / "abs_escape") if value == "ABS" else value
    args = [f"cache_dir={here / 'cache'}", f"results_dir={here / 'results'}",
            f"data_root={here / 'data'}", f"{key}={value}"]  # fmt: skip
    with pytest.raises(ProbeError) as err:
        run(compose_cfg(args))
    msg = str(err.value)
    assert msg.startswith(f"{key}={value!r} ") and "\n" not in msg and "plain name" in msg
    assert _files_under(tmp_path) == []


@pytest.mark.parametrize("value", ["logs", "tables", "a@b", "x\ty"])
def test_encoder_names_the_results_dir_or_the_result_name_reserves(tmp_path, value) -> None:
    args = [f"cache_dir={tmp_path / 'cache'}", f"results_dir={tmp_path / 'results'}",
            f"encoder.name={value}"]  # fmt: skip
    with pytest.raises(ProbeError, match=r"encoder.name="):
        run(compose_cfg(args))
    assert _files_under(tmp_path) == []


@pytest.mark.parametrize("value", ["../../escaped", "ABS"])
def test_the_cli_refuses_a_bad_name_before_hydra_makes_its_log_folder(tmp_path, value) -> None:
    here = _deep(tmp_path)
    value = str(tmp_path / "abs_escape") if value == "ABS" else value
    args = [f"cache_dir={here / 'cache'}", f"results_dir={here / 'results'}",
            f"dataset.name={value}", "stage=extract"]  # fmt: skip
    proc = run_cli(args, cwd=here)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-2000:]
    assert f"dataset.name={value!r}" in out and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1
    assert _files_under(tmp_path) == []


def test_a_grid_with_a_bad_name_fails_at_planning(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from probe.launch.grid import make_grid

    grid = {"name": "g", "encoders": ["pixels"], "datasets": ["digits"],
            "variants": [["encoder.name=ok"], ["encoder.name=../../out"]]}  # fmt: skip
    res = tmp_path / "r"
    cfg = OmegaConf.create({"grid": grid, "results_dir": str(res), "tasks_dir": str(res / "t"),
                            "force": False})  # fmt: skip
    with pytest.raises(ProbeError, match=r"encoder.name='../../out' holds a path separator"):
        make_grid(cfg)
    cfg.grid = {**grid, "name": "../g", "variants": [["encoder.name=ok"]]}
    with pytest.raises(ProbeError, match=r"grid.name='../g'"):
        make_grid(cfg)
    assert _files_under(tmp_path) == []


def test_the_corrupt_scan_memo_lives_under_cache_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PROBE_SCAN_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    fake = fakes.make("imagefolder", tmp_path / "data")
    args = [f"cache_dir={tmp_path / 'cache'}", f"results_dir={tmp_path / 'results'}",
            "dataset=imagefolder", *fake.overrides, "dataset.skip_corrupt=true",
            "stage=extract"]  # fmt: skip
    run(compose_cfg(args))
    assert len(list((tmp_path / "cache" / ".scans").glob("*.json"))) == 3  # train, val, test
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "home").exists()
    monkeypatch.setenv("PROBE_SCAN_CACHE", str(tmp_path / "moved"))  # the user's choice wins
    run(compose_cfg([*args, f"cache_dir={tmp_path / 'cache2'}"]))
    assert len(list((tmp_path / "moved").glob("*.json"))) == 3
    assert not (tmp_path / "cache2" / ".scans").exists()


def test_identity_helpers_agree_with_numpy() -> None:
    """`repeated` (the per-split check) finds each later repeat with its first occurrence."""
    from probe.core.walk import repeated

    ids = np.array([[1, 5], [1, 6], [1, 5], [2, 5], [1, 6]], dtype=np.uint64)
    assert repeated(ids) == [(2, 0), (4, 1)]
    assert repeated(np.zeros((0, 2), dtype=np.uint64)) == []
