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
from conftest import REPO

from probe.features.cache import fingerprint

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
    """An image-folder dataset (train/val/test of 3 classes) and its ids without any link."""
    fakes.make("imagefolder", tmp_path / "data")
    root = tmp_path / "data" / "folders"
    return root, build_folders(root)


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


def test_identity_helpers_agree_with_numpy() -> None:
    """`repeated` (the per-split check) finds each later repeat with its first occurrence."""
    from probe.core.walk import repeated

    ids = np.array([[1, 5], [1, 6], [1, 5], [2, 5], [1, 6]], dtype=np.uint64)
    assert repeated(ids) == [(2, 0), (4, 1)]
    assert repeated(np.zeros((0, 2), dtype=np.uint64)) == []
