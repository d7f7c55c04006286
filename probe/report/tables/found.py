"""The result files every table reads, found once: `{results_dir}/{encoder}/{dataset}[.EVAL].json`.

Every table (the paper tables, `table=knn`, `table=fewshot`) takes its results from `scan`:

- A file is counted once, whatever names lead to it: files are identified by device and
  inode, so a folder link inside a results dir, or one tree given twice (`results_dir` and
  `extra_results_dirs`), adds no second copy; of several names for one file, the one its
  record names is kept.
- Only done results count (`probe.report.done`: whole, complete, at the path its own record
  names, with its head). Every other file that is, or looks like, a result is listed with why
  and the command that remakes the cell its path names; a JSON object without `encoder`,
  `dataset` and `eval` is someone's notes and is left alone.
- Two done results for one cell (two results dirs, or a record written under another name) are
  an error naming both files (`claims`): a table never picks whichever it read last.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from probe.core.errors import ProbeError
from probe.core.names import RESERVED
from probe.report.done import KEYS, placement, read_result
from probe.report.record import DEFAULT_PROTOCOL, LINEAR, REQUIRED_BY_EVAL, name_overrides

T = TypeVar("T")


@dataclass
class Found:
    """A done result: its file and its record."""

    path: Path
    record: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return str(self.record["encoder"]), str(self.record["dataset"])


def fill_command(
    encoder: str,
    dataset: str,
    results_dir: str | Path,
    evaluation: str = LINEAR,
    *,
    protocol: str = DEFAULT_PROTOCOL,
) -> str:
    """The `python -m probe` command that writes the result of (encoder, dataset), under a
    protocol card other than the default when one is given."""
    args = [*name_overrides(encoder), f"dataset={dataset}"]
    if protocol != DEFAULT_PROTOCOL:
        args.append(f"protocol={protocol}")
    if evaluation != LINEAR:
        args.append(f"eval={evaluation}")
    if str(results_dir) != "results":
        args.append(f"results_dir={results_dir}")
    return "python -m probe " + shlex.join(args)


def grid_command(grid: str, results_dir: str | Path) -> str:
    """The `python -m probe.grid` command that fills a table's missing cells, in its results
    dir (the one the table was given, not the default)."""
    args = [f"grid={grid}"]
    if str(results_dir) != "results":
        args.append(f"results_dir={results_dir}")
    return "python -m probe.grid " + shlex.join(args)


def named_eval(path: Path) -> str:
    """The evaluation a result's file name says (`{dataset}.knn.json`: knn)."""
    stem = path.name.removesuffix(".json")
    return next((e for e in REQUIRED_BY_EVAL if e != LINEAR and stem.endswith(f".{e}")), LINEAR)


def _candidates(root: Path) -> Iterable[Path]:
    """`{root}/{folder}/{name}.json`, hidden names and the results dir's own folders left out."""
    for folder in sorted(root.iterdir()):
        if folder.name in RESERVED or folder.name.startswith(".") or not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.name.endswith(".json") and not path.name.startswith("."):
                yield path


def _by_file(results_dirs: list[str | Path]) -> dict[tuple[int, int], list[Path]]:
    """Each real file (device, inode) -> every name that leads to it, in scan order."""
    out: dict[tuple[int, int], list[Path]] = {}
    for root in (Path(d).expanduser() for d in results_dirs):
        if not root.is_dir():
            continue
        for path in _candidates(root):
            try:
                st = os.stat(path)
            except OSError:
                continue  # a dangling link: no file
            out.setdefault((st.st_dev, st.st_ino), []).append(path)
    return out


def _remake(path: Path, evaluation: str) -> str:
    stem = path.name.removesuffix(".json")
    dataset = stem if evaluation == LINEAR else stem.removesuffix(f".{evaluation}")
    cmd = fill_command(path.parent.name, dataset, path.parent.parent, evaluation)
    return f"remake it: `{cmd}`"


def scan(results_dirs: list[str | Path], evaluation: str) -> tuple[list[Found], list[str]]:
    """The done results of one evaluation in `results_dirs`, and why each file that is (or
    looks like) one of its results is not done, with the fix."""
    found, bad = [], []
    for names in _by_file(results_dirs).values():
        record, why = read_result(names[0])
        if record is not None and len(names) > 1:  # the name its record names, if any
            path = next((p for p in names if placement(p, record) is None), names[0])
            record, why = read_result(path)
        else:
            path = names[0]
        if record is not None and not any(k in record for k in KEYS):
            continue  # a JSON object that is no result (notes): not ours to judge
        ev = record.get("eval") if record is not None else None
        if (ev if isinstance(ev, str) else named_eval(path)) != evaluation:
            continue
        if why is None:
            found.append(Found(path, record))
        else:
            bad.append(f"{path}: {why}; {_remake(path, evaluation)}")
    return found, bad


def claims(items: Iterable[T], *, key: Callable[[T], tuple[str, str]],
           path: Callable[[T], Path]) -> dict[tuple[str, str], T]:  # fmt: skip
    """(encoder, dataset) -> its one result; two results for one cell is an error."""
    out: dict[tuple[str, str], T] = {}
    for item in items:
        k = key(item)
        if k in out:
            raise ProbeError(
                f"two results for {k[0]} on {k[1]}: {path(out[k])} and {path(item)}. Delete or "
                "move one (or drop one of the results dirs)."
            )
        out[k] = item
    return out
