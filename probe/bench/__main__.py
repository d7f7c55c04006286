"""`python -m probe.bench solvers|extract|evals|precomputed|memory|intervals`: one benchmark."""

from __future__ import annotations

import importlib
import sys

BENCHES = {
    "solvers": "probe.bench.solvers",
    "extract": "probe.bench.extract",
    "evals": "probe.bench.evals",
    "precomputed": "probe.bench.precomputed",
    "memory": "probe.bench.memory",
    "intervals": "probe.bench.intervals",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHES:
        sys.stderr.write(f"usage: python -m probe.bench {{{'|'.join(BENCHES)}}} [options]\n")
        return 2
    module = importlib.import_module(BENCHES[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
