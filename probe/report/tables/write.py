"""A table's files from the result JSONs, written atomically: a paper table (md, csv, tex,
png), or a table of another evaluation (`kind: fewshot` md, csv, png; `kind: knn` md, csv;
`kind: attentive`, linear beside attentive, md, csv)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from probe.core.io import write_bytes_atomic, write_text_atomic
from probe.core.names import check_name
from probe.report.tables import evals, paired
from probe.report.tables.data import Layout, build_table
from probe.report.tables.latex import to_latex
from probe.report.tables.plot import to_png
from probe.report.tables.render import to_csv, to_markdown

# tables of evaluations other than the paper's kind: their builder and renderer (the few-shot
# and k-NN tables: `evals`; linear beside attentive: `paired`)
EVAL_KINDS = {"attentive": (paired.build_paired_table, paired)}


def make_table(cfg: DictConfig) -> tuple[Any, dict[str, Path], str]:
    """Build the table and write its files; returns (table, paths by format, markdown)."""
    dirs = [cfg.results_dir, *(cfg.get("extra_results_dirs") or [])]
    out = Path(cfg.out_dir).expanduser()
    kind = cfg.table.get("kind", "paper")
    check_name(cfg.table.get("name"), key="table.name")  # its files: {out_dir}/{name}.md, ...
    if kind != "paper":
        spec = OmegaConf.to_container(cfg.table, resolve=True)
        build, module = EVAL_KINDS.get(kind, (evals.build_eval_table, evals))
        table = build(spec, results_dirs=dirs)
        markdown = module.to_markdown(table)
        paths = {
            "md": write_text_atomic(out / f"{table.name}.md", markdown),
            "csv": write_text_atomic(out / f"{table.name}.csv", module.to_csv(table)),
        }
        if kind == "fewshot":
            paths["png"] = write_bytes_atomic(out / f"{table.name}.png", evals.fewshot_png(table))
        return table, paths, markdown
    layout = Layout.from_cfg(cfg.table)
    table = build_table(layout, results_dirs=dirs, published_dir=cfg.get("published_dir"),
                        ci=bool(cfg.get("ci", True)),
                        bootstrap=dict(cfg.get("bootstrap") or {}))  # fmt: skip
    markdown = to_markdown(table)
    paths = {
        "md": write_text_atomic(out / f"{layout.name}.md", markdown),
        "csv": write_text_atomic(out / f"{layout.name}.csv", to_csv(table)),
        "tex": write_text_atomic(out / f"{layout.name}.tex", to_latex(table)),
        "png": write_bytes_atomic(out / f"{layout.name}.png", to_png(table)),
    }
    return table, paths, markdown
