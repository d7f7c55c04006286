"""`probe/bench/gpu_check.sh` runs only where a GPU is lent, against a device budget of
minutes: every bench command in it is parsed here by that bench's own parser, so a renamed
or mistyped option fails on CPU, in the suite, and not on the GPU's clock."""

from __future__ import annotations

import importlib
import shlex
from pathlib import Path

import pytest

from probe.bench.__main__ import BENCHES

SCRIPT = Path(__file__).resolve().parents[1] / "probe" / "bench" / "gpu_check.sh"
ENV = {"$OUT": "/tmp/out", '"$N_IMAGES"': "4096", "$N_IMAGES": "4096"}


def bench_commands() -> list[tuple[str, list[str]]]:
    """(bench, argv) of every `python -m probe.bench ...` command, continuation lines joined,
    the shell's redirections and pipes cut off."""
    text = SCRIPT.read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("python -m probe.bench "):
            continue
        for cut in ("||", "2>&1", "|"):
            line = line.split(cut)[0]
        for name, value in ENV.items():
            line = line.replace(name, value)
        words = shlex.split(line)
        found.append((words[3], words[4:]))
    return found


def test_the_script_holds_every_gpu_measurement() -> None:
    benches = [name for name, _ in bench_commands()]
    assert {"extract", "solvers", "evals"} <= set(benches)
    solver_runs = [argv for name, argv in bench_commands() if name == "solvers"]
    assert any("imagenet" in argv and "torch,cuml" in argv for argv in solver_runs)


@pytest.mark.parametrize("name,argv", bench_commands(), ids=lambda v: str(v)[:40])
def test_each_bench_command_parses(name: str, argv: list[str]) -> None:
    module = importlib.import_module(BENCHES[name])
    module.parse(argv)  # argparse exits (SystemExit 2) on an unknown option or bad value
