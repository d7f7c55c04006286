"""`python -m probe.table table=NAME`: results next to the published numbers.

Reads every `{results_dir}/{encoder}/{dataset}.json` (and those of `extra_results_dirs`),
matches them to the table config's cells and to the published CSV, writes
`{out_dir}/NAME.md`, `.csv`, `.tex` and `.png` (atomically) and prints the markdown.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from probe.errors import exit_on_probe_error
from probe.io import write_bytes_atomic, write_text_atomic
from probe.tables.data import Layout, TableData, build_table
from probe.tables.plot import to_png
from probe.tables.render import to_csv, to_latex, to_markdown

log = logging.getLogger("probe.table")
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")


def make_table(cfg: DictConfig) -> tuple[TableData, dict[str, Path], str]:
    """Build the table and write its four files; returns (table, paths by format, markdown)."""
    layout = Layout.from_cfg(cfg.table)
    dirs = [cfg.results_dir, *(cfg.get("extra_results_dirs") or [])]
    table = build_table(layout, results_dirs=dirs, published_dir=cfg.get("published_dir"))
    markdown = to_markdown(table)
    out = Path(cfg.out_dir).expanduser()
    paths = {
        "md": write_text_atomic(out / f"{layout.name}.md", markdown),
        "csv": write_text_atomic(out / f"{layout.name}.csv", to_csv(table)),
        "tex": write_text_atomic(out / f"{layout.name}.tex", to_latex(table)),
        "png": write_bytes_atomic(out / f"{layout.name}.png", to_png(table)),
    }
    return table, paths, markdown


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="probe_table")
def main(cfg: DictConfig) -> None:
    with exit_on_probe_error(log):
        table, paths, markdown = make_table(cfg)
    print(markdown)
    filled = sum(c.ours is not None for c in table.cells.values())
    print(f"{filled}/{len(table.cells)} cells filled; wrote {', '.join(map(str, paths.values()))}")


if __name__ == "__main__":
    main()
