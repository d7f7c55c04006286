"""`python -m probe.table table=NAME`: results next to the published numbers.

Reads every `{results_dir}/{encoder}/{dataset}.json` (and those of `extra_results_dirs`),
matches them to the table config's cells and to the published CSV, writes
`{out_dir}/NAME.md`, `.csv`, `.tex` and `.png` (atomically) and prints the markdown. The
work is `probe.report.tables`; this is the command line.
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from probe.core.errors import exit_on_probe_error
from probe.core.paths import config_dir
from probe.report.tables.write import make_table

log = logging.getLogger("probe.table")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="probe_table")
def main(cfg: DictConfig) -> None:
    with exit_on_probe_error(log):
        table, paths, markdown = make_table(cfg)
    print(markdown)
    wrote = ", ".join(map(str, paths.values()))
    if hasattr(table, "cells"):
        filled = sum(c.ours is not None for c in table.cells.values())
        print(f"{filled}/{len(table.cells)} cells filled; wrote {wrote}")
    else:
        print(f"{len(table.results)} results; wrote {wrote}")


if __name__ == "__main__":
    main()
