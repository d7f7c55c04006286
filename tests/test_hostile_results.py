"""Hostile results dirs (issue 24): every table takes one result per cell, and only one that is
done; a damaged result is never counted as done anywhere, so it can always be refilled.

"Done" is one check (`probe.report.done`) used by `python -m probe.grid`, the SLURM script and
every table; these tests break a result in each way a copy, a crash or a hand can, and check
that the grid, the script and the tables all agree that it is not done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from resultkit import done_result, write_result
from test_grid import run_task, tiny_grid_cfg
from test_table import md_row, table_cfg

from probe.core.errors import ProbeError
from probe.launch.grid import make_grid
from probe.report.tables.write import make_table

KINDS = ["linear", "knn", "fewshot"]
TABLE = {"linear": "mlcd_linear_probe", "knn": "knn", "fewshot": "fewshot"}


def scored(kind: str, score: float) -> dict:
    """The fields a table shows of a result of `kind` with `score`."""
    if kind == "linear":
        return {"score": score}
    if kind == "knn":
        return {"score": score, "score_ci": [score - 1, score + 1], "k": 10,
                "test_score_by_k": {"10": score, "20": score}}  # fmt: skip
    return {"by_k": {"1": {"mean": score, "std": None, "scores": [score]}}}


def cell(md: str, kind: str) -> str:
    """The clip_l14-on-CIFAR-10 cell of a table's markdown."""
    if kind == "linear":
        return md_row(md, "CIFAR-10")[4]
    if kind == "knn":
        return md_row(md, "cifar10")[1]
    return md_row(md, "clip_l14")[1]


def table(kind: str, root: Path, *dirs: Path) -> str:
    extra = [f"extra_results_dirs=[{','.join(map(str, dirs))}]"] if dirs else []
    return make_table(table_cfg(TABLE[kind], [f"results_dir={root}", "ci=false", *extra]))[2]


# --- 3. one result per cell in every table; a misplaced record is refused ---------------------


@pytest.mark.parametrize("kind", ["knn", "fewshot"])
def test_two_results_for_one_cell_are_refused_in_the_eval_tables(tmp_path, kind) -> None:
    a = done_result(tmp_path / "r", "clip_l14", "cifar10", kind, **scored(kind, 98.44))
    b = done_result(tmp_path / "more", "clip_l14", "cifar10", kind, **scored(kind, 11.11))
    with pytest.raises(ProbeError, match="two results for clip_l14 on cifar10") as err:
        table(kind, tmp_path / "r", tmp_path / "more")
    assert str(a) in str(err.value) and str(b) in str(err.value)


@pytest.mark.parametrize("kind", KINDS)
def test_a_stray_copy_under_another_folder_is_refused_in_every_table(tmp_path, kind) -> None:
    root = tmp_path / "r"
    done_result(root, "clip_l14", "cifar10", kind, **scored(kind, 98.44))
    suffix = "" if kind == "linear" else f".{kind}"
    stray = write_result(root / "old_runs" / f"cifar10{suffix}.json",
                         {"encoder": "clip_l14", "dataset": "cifar10", "eval": kind,
                          **scored(kind, 11.11)})  # fmt: skip
    md = table(kind, root)
    assert cell(md, kind).startswith("98.44") and "11.11" not in md
    assert f"{stray}: its record is clip_l14 on cifar10 ({kind})" in md


@pytest.mark.parametrize("kind", ["knn", "fewshot"])
def test_a_record_naming_another_dataset_than_its_file_is_refused(tmp_path, kind) -> None:
    root = tmp_path / "r"
    done_result(root, "clip_l14", "cifar10", kind, **scored(kind, 98.44))
    wrong = write_result(root / "clip_l14" / f"cifar100.{kind}.json",
                         {"encoder": "clip_l14", "dataset": "cifar10", "eval": kind,
                          **scored(kind, 11.11)})  # fmt: skip
    md = table(kind, root)
    assert cell(md, kind).startswith("98.44") and "11.11" not in md
    assert f"{wrong}: its record is clip_l14 on cifar10" in md


def test_a_record_of_another_evaluation_in_a_knn_file_is_refused(tmp_path) -> None:
    root = tmp_path / "r"
    fewshot = {"encoder": "clip_l14", "dataset": "cifar10", "eval": "fewshot",
               **scored("fewshot", 11.11)}  # fmt: skip
    wrong = write_result(root / "clip_l14" / "cifar10.knn.json", fewshot)
    md = table("fewshot", root)
    assert "11.11" not in md and f"{wrong}: its record is clip_l14 on cifar10 (fewshot)" in md
    assert "11.11" not in table("knn", root)


@pytest.mark.parametrize("kind", ["linear", "knn"])
def test_a_linked_folder_or_a_dir_given_twice_adds_no_second_result(tmp_path, kind) -> None:
    root = tmp_path / "r"
    done_result(root, "clip_l14", "cifar10", kind, **scored(kind, 98.44))
    os.symlink("clip_l14", root / "aaa_alias")  # read first, yet the record names clip_l14
    for md in (table(kind, root), table(kind, root, root)):
        assert cell(md, kind).startswith("98.44") and "aaa_alias" not in md


# --- 4. done means a whole result: one check for the grid, the SLURM script and the tables ----


def _truncate(path: Path) -> None:
    path.write_text(path.read_text()[: len(path.read_text()) // 2])


def _drop(key: str):
    def damage(path: Path) -> None:
        rec = json.loads(path.read_text())
        del rec[key]
        path.write_text(json.dumps(rec))

    return damage


def _other_head(path: Path) -> None:
    np.savez(path.with_suffix(".npz"), coef=np.ones((2, 3)), intercept=np.ones(2))


def _other_encoder(path: Path) -> None:
    rec = json.loads(path.read_text())
    path.write_text(json.dumps({**rec, "encoder": "someone_else"}))


DAMAGE = {
    "truncated": _truncate,
    "empty": lambda p: p.write_text(""),
    "not an object": lambda p: p.write_text("[]"),
    "no fields": lambda p: p.write_text("{}"),
    "bytes, not text": lambda p: p.write_bytes(b"\xff\xfe\x00garbage"),
    "lacks n_test": _drop("n_test"),
    "lacks its head field": _drop("head"),
    "head deleted": lambda p: p.with_suffix(".npz").unlink(),
    "head of another run": _other_head,
    "another encoder's record": _other_encoder,
    "a FIFO in its place": lambda p: (p.unlink(), os.mkfifo(p)),
    "a folder in its place": lambda p: (p.unlink(), p.mkdir()),
}


@pytest.mark.parametrize("damage", list(DAMAGE.values()), ids=list(DAMAGE))
def test_a_damaged_result_is_not_done_for_the_grid_nor_the_tables(tmp_path, damage) -> None:
    res = tmp_path / "results"
    path = done_result(res, "pix4", "digits")
    _, todo, done = make_grid(tiny_grid_cfg(tmp_path))
    assert [r.result for r in done] == [path]  # whole: done
    damage(path)
    _, todo, done = make_grid(tiny_grid_cfg(tmp_path))
    assert path in [r.result for r in todo] and not done
    proc = subprocess.run([sys.executable, "-m", "probe.report.done", str(path)],
                          capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert proc.returncode == 1 and "not done" in proc.stdout, proc.stderr[-2000:]
    md = make_table(table_cfg("mlcd_linear_probe", [f"results_dir={res}", "ci=false",
                                                    "table.columns.values=[pix4]",
                                                    "table.rows.values=[digits]"]))[2]  # fmt: skip
    assert md_row(md, "digits")[1] == "-"
    assert f"pix4 on digits: `python -m probe encoder=pix4 dataset=digits results_dir={res}`" in md


def test_the_sbatch_script_reruns_a_damaged_result(tmp_path: Path) -> None:
    task_file, todo, _ = make_grid(tiny_grid_cfg(tmp_path))
    first = todo[0].result
    first.parent.mkdir(parents=True)
    first.write_text('{"encoder": "pix4", "dataset": "dig')  # a copy cut short
    ran = run_task(task_file, 1)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "not readable JSON" in ran.stdout and "skipping" not in ran.stdout
    rec = json.loads(first.read_text())
    assert rec["encoder"] == "pix4" and first.with_suffix(".npz").is_file()
    again = run_task(task_file, 1)
    assert again.returncode == 0 and "is done: skipping" in again.stdout


def test_the_tables_fill_hints_carry_their_results_dir(tmp_path: Path) -> None:
    root = tmp_path / "r"
    done_result(root, "clip_l14", "cifar10", "linear", score=98.0)
    md = table("linear", root)
    assert f"`python -m probe.grid grid=mlcd_linear_probe results_dir={root}`" in md
    (root / "clip_l14" / "cifar10.knn.json").write_text("{")
    md = table("knn", root)
    assert f"encoder=clip_l14 dataset=cifar10 eval=knn results_dir={root}`" in md
