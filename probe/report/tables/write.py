"""A paper table's four files from the result JSONs: md, csv, tex and png, written atomically."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from probe.core.io import write_bytes_atomic, write_text_atomic
from probe.report.tables.data import Layout, TableData, build_table
from probe.report.tables.plot import to_png
from probe.report.tables.render import to_csv, to_latex, to_markdown


def make_table(cfg: DictConfig) -> tuple[TableData, dict[str, Path], str]:
    """Build the table and write its four files; returns (table, paths by format, markdown)."""
    layout = Layout.from_cfg(cfg.table)
    dirs = [cfg.results_dir, *(cfg.get("extra_results_dirs") or [])]
    table = build_table(layout, results_dirs=dirs, published_dir=cfg.get("published_dir"),
                        ci=bool(cfg.get("ci", True)),
                        bootstrap=dict(cfg.get("bootstrap") or {}))  # fmt: skip
    markdown = to_markdown(table)
    out = Path(cfg.out_dir).expanduser()
    paths = {
        "md": write_text_atomic(out / f"{layout.name}.md", markdown),
        "csv": write_text_atomic(out / f"{layout.name}.csv", to_csv(table)),
        "tex": write_text_atomic(out / f"{layout.name}.tex", to_latex(table)),
        "png": write_bytes_atomic(out / f"{layout.name}.png", to_png(table)),
    }
    return table, paths, markdown
