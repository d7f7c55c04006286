"""`python -m probe.table table=NAME`: results next to the published numbers.

Reads every `{results_dir}/{encoder}/{dataset}.json` (and those of `extra_results_dirs`),
matches them to the table config's cells and to the published CSV, writes
`{out_dir}/NAME.md`, `.csv`, `.tex` and `.png` (atomically) and prints the markdown. The
work is `probe.report.tables`; this is the command line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from probe.core.errors import ProbeError, exit_on_probe_error
from probe.core.io import write_text_atomic
from probe.core.paths import config_dir
from probe.report.tables.model_index import model_index
from probe.report.tables.write import make_table

log = logging.getLogger("probe.table")
FORMATS = ("tables", "model-index")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="probe_table")
def main(cfg: DictConfig) -> None:
    if cfg.get("format", "tables") not in FORMATS:
        with exit_on_probe_error(log):
            raise ProbeError(f"format={cfg.format!r} unknown; allowed: {', '.join(FORMATS)}")
    if cfg.get("format", "tables") == "model-index":
        return card(cfg)
    with exit_on_probe_error(log):
        table, paths, markdown = make_table(cfg)
    print(markdown)
    wrote = ", ".join(map(str, paths.values()))
    if hasattr(table, "cells"):
        filled = sum(c.ours is not None for c in table.cells.values())
        print(f"{filled}/{len(table.cells)} cells filled; wrote {wrote}")
    else:
        print(f"{len(table.results)} results; wrote {wrote}")


def card(cfg: DictConfig) -> None:
    """`format=model-index card=ENCODER`: the model card's `model-index` block of one
    encoder's results, printed and written to `{out_dir}/ENCODER.model-index.yaml`."""
    with exit_on_probe_error(log):
        if not cfg.get("card"):
            raise ProbeError("format=model-index needs card=ENCODER (a folder of results_dir)")
        dirs = [cfg.results_dir, *(cfg.get("extra_results_dirs") or [])]
        text = model_index(dirs, str(cfg.card), include_flagged=bool(cfg.include_flagged))
        path = Path(cfg.out_dir).expanduser() / f"{cfg.card}.model-index.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    print(text, end="")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
