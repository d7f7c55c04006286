"""When a result counts as done: one check for the grid, the SLURM script and every table.

A result is done when the file at `{results_dir}/{encoder}/{dataset}[.EVAL].json` is a whole,
readable record of that very run: a JSON object, with every field a run writes
(`record.REQUIRED_FIELDS` and its evaluation's `REQUIRED_BY_EVAL`), naming the encoder,
dataset and evaluation its path names, and, for an evaluation with a head (linear, attentive,
sgd_linear), with the head `.npz` beside it whose SHA-256 the record names. Anything less (an
empty or truncated copy, a copy moved under another name, a head from another run) is not
done: `python -m probe.grid` schedules the run again, `slurm/probe_array.sbatch` reruns it
instead of skipping it, and the tables list the file with the command that remakes it, so what
a table calls missing can always be refilled.

`python -m probe.report.done RESULT` exits 0 when RESULT is done and 1, saying why, when it is
not (the SLURM script's test).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from probe.report.heads import head_path
from probe.report.record import REQUIRED_BY_EVAL, REQUIRED_FIELDS, result_path

KEYS = ("encoder", "dataset", "eval")


def read_result(path: str | Path) -> tuple[dict[str, Any] | None, str | None]:
    """(record, None) for a done result; (the record if readable, why it is not done)."""
    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the read forever
            return None, "not a regular file"
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "no such file"
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return None, f"not readable JSON ({err})"
    if not isinstance(record, dict):
        return None, f"not a result (a JSON {type(record).__name__}, not an object)"
    return record, problem(path, record)


def problem(path: Path, record: dict[str, Any]) -> str | None:
    """Why a readable record at `path` is not a done result, or None."""
    evaluation = record.get("eval")
    if evaluation not in REQUIRED_BY_EVAL:
        return f"eval={evaluation!r} is not an evaluation ({', '.join(REQUIRED_BY_EVAL)})"
    missing = [k for k in (*REQUIRED_FIELDS, *REQUIRED_BY_EVAL[evaluation]) if k not in record]
    if missing:
        return f"incomplete: lacks {', '.join(missing)}"
    misplaced = placement(path, record)
    if misplaced:
        return misplaced
    return head_problem(path, record) if "head" in REQUIRED_BY_EVAL[evaluation] else None


def placement(path: Path, record: dict[str, Any]) -> str | None:
    """A record that names another encoder, dataset or evaluation than its path: a stray
    copy, never the result of the cell its path names."""
    if not all(isinstance(record.get(k), str) for k in KEYS):
        return f"its {', '.join(KEYS)} are not all names"
    want = result_path(path.parent.parent, record["encoder"], record["dataset"], record["eval"])
    if (want.parent.name, want.name) == (path.parent.name, path.name):
        return None
    return (
        f"its record is {record['encoder']} on {record['dataset']} ({record['eval']}), whose "
        f"result is {want.parent.name}/{want.name}, not {path.parent.name}/{path.name} (a copy "
        "or a move): move it there or delete it"
    )


def head_problem(path: Path, record: dict[str, Any]) -> str | None:
    """The head beside a result must be the one its record names (SHA-256)."""
    head = record.get("head")
    want = head.get("sha256") if isinstance(head, dict) else None
    if not isinstance(want, str):
        return "its `head` names no SHA-256"
    beside = head_path(path)
    try:
        if not stat.S_ISREG(os.stat(beside).st_mode):
            return f"its head {beside.name} is not a regular file"
        got = hashlib.sha256(beside.read_bytes()).hexdigest()
    except OSError as err:
        return f"its head {beside.name} is missing or unreadable ({err.strerror or err})"
    if got != want:
        return f"its head {beside.name} is not the one the record names (SHA-256 differs)"
    return None


def is_done(path: str | Path) -> bool:
    """True if `path` holds a done result (see the module's docstring)."""
    return read_result(path)[1] is None


def main(argv: list[str] | None = None) -> int:
    """`python -m probe.report.done RESULT`: 0 done, 1 not (why on stdout), 2 usage."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m probe.report.done RESULT.json\n")
        return 2
    why = read_result(args[0])[1]
    if why is not None:
        sys.stdout.write(f"{args[0]}: not done: {why}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
