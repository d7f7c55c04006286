"""A table's numbers: result JSONs and published CSVs matched cell by cell.

A table config names rows and columns, one of them encoders and the other datasets; each
(row, column) cell holds our score for that (encoder, dataset), the published one and their
difference. Results come from `{results_dir}/{encoder}/{dataset}.json` files, each file
once and only done ones, at the path their own record names (`found.scan`: the others are
listed with their fix). A file that claims a cell another file already claims is an error; a
result scored with another metric than the protocol's for its dataset is refused (listed,
never mixed in). A result that is not a plain protocol run (`flags`) fills its cell with the
reasons attached, which the text marks with a dagger. Each cell's interval keeps the level
its run recorded; a column whose cells were run at different levels is refused
(`stats.column_level`).

A table holds one protocol (`protocol:` in its config, default `clip`): its cells take only
results whose record names that card (`record.protocol_of`), so two papers' protocols never
share a column, and a result of another card for the same encoder and dataset is neither shown
nor a second claim on the cell. A card's results are filed under its tag
(`dinov2_l14@cls@dinov2`); the table names them without it (the column `dinov2_l14@cls` of a
`protocol: dinov2` table), and a missing cell's command carries `protocol=NAME`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from probe.core.errors import ProbeError
from probe.core.names import check_name
from probe.core.paths import published_dir as default_published
from probe.report.record import DEFAULT_PROTOCOL, LINEAR, protocol_of
from probe.report.tables import stats
from probe.report.tables.found import Found, claims, fill_command, grid_command
from probe.report.tables.frame import load_results
from probe.report.tables.published import protocol_metric, published_for, read_published
from probe.report.tables.stats import PairDiff, pair

log = logging.getLogger(__name__)
KEYS = ("encoder", "dataset")


@dataclass(frozen=True)
class Layout:
    name: str
    title: str
    row_key: str  # "dataset" or "encoder"; columns are the other
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    bold: str  # "row": best across columns in each row; "column": best down each column
    labels: dict[str, str]
    published: str
    grid: str | None
    protocol: str = DEFAULT_PROTOCOL  # the card whose results fill the cells

    @classmethod
    def from_cfg(cls, cfg: Any) -> Layout:
        t = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else cfg
        row_key, col_key = t["rows"]["key"], t["columns"]["key"]
        if {row_key, col_key} != set(KEYS):
            raise ProbeError(
                f"table {t.get('name')!r}: rows.key={row_key!r} and columns.key={col_key!r} "
                "must be `dataset` and `encoder`, one each"
            )
        if t.get("bold", "row") not in ("row", "column"):
            raise ProbeError(f"table {t['name']!r}: bold={t['bold']!r}; use row or column")
        return cls(
            name=t["name"],
            title=t.get("title") or t["name"],
            row_key=row_key,
            rows=tuple(t["rows"]["values"]),
            cols=tuple(t["columns"]["values"]),
            bold=t.get("bold", "row"),
            labels=dict(t.get("labels") or {}),
            published=t["published"],
            grid=t.get("grid"),
            protocol=check_name(t.get("protocol") or DEFAULT_PROTOCOL, key="table.protocol"),
        )

    def cell_key(self, row: str, col: str) -> tuple[str, str]:
        """(encoder, dataset) of a cell."""
        return (col, row) if self.row_key == "dataset" else (row, col)

    def label(self, name: str) -> str:
        return self.labels.get(name, name)

    def fill(self, encoder: str, dataset: str, results_dir: str | Path) -> str:
        """The command that writes the result of a cell, under the table's protocol."""
        return fill_command(encoder, dataset, results_dir, protocol=self.protocol)


@dataclass
class Result:
    encoder: str
    dataset: str
    metric: str
    score: float
    path: Path
    record: dict[str, Any] = field(default_factory=dict, repr=False)
    flags: list[str] = field(default_factory=list)  # why it is not a plain protocol run


@dataclass
class Cell:
    ours: float | None = None
    published: float | None = None
    path: Path | None = None  # the result file of `ours`
    flags: list[str] = field(default_factory=list)  # why it is not a plain protocol run
    ci: list[float] | None = None  # the bootstrap interval of `ours` (its `score_ci`)
    level: float | None = None  # the interval's level (its run's `bootstrap.level`)

    @property
    def published_within_ci(self) -> bool | None:
        """Whether the published number lies within our interval (None: cannot tell): a
        heuristic, not a test of reproduction (docs/tables.md)."""
        return stats.published_within(self.ci, self.published)

    @property
    def diff(self) -> float | None:
        if self.ours is None or self.published is None:
            return None
        return self.ours - self.published


@dataclass
class TableData:
    layout: Layout
    cells: dict[tuple[str, str], Cell]
    missing: list[tuple[str, str, str]] = field(default_factory=list)  # encoder, dataset, cmd
    refused: list[str] = field(default_factory=list)
    bad_files: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pairs: list[PairDiff] = field(default_factory=list)  # ours(reference) - ours(other)
    ci: bool = True  # show intervals, published-within-interval and paired differences
    levels: dict[str, float] = field(default_factory=dict)  # column -> its intervals' level
    pair_level: float | None = None  # the paired differences' level (the table's bootstrap)
    grid_command: str | None = None  # the grid that fills every missing cell, if the table has one


def _as_result(found: Found) -> tuple[Result | None, str | None]:
    """A done linear result as a cell's value, or why its score cannot be one."""
    data = found.record
    score = data.get("score")
    if not isinstance(score, (int, float)) or isinstance(score, bool):
        return None, f"{found.path}: a result without a numeric `score`"
    enc, ds, metric = (str(data[k]) for k in ("encoder", "dataset", "metric"))
    return Result(enc, ds, metric, float(score), found.path, data), None


def scan_results(results_dirs: list[str | Path]) -> tuple[list[Result], list[str]]:
    """Every done `{dir}/{encoder}/{dataset}.json` result, and why each other is not: the
    linear rows of `probe.load_results` (`frame.load_results`: each file once, damaged,
    partial or misplaced ones listed)."""
    for root in map(lambda d: Path(d).expanduser(), results_dirs):
        if not root.is_dir():
            log.warning("results dir %s does not exist: no results read from it", root)
    frame = load_results(results_dirs, evals=[LINEAR])
    results, bad = [], list(frame.attrs["bad_files"])
    for row in frame.itertuples(index=False):
        res, why = _as_result(Found(Path(row.path), row.record))
        if res is not None:
            res.flags = list(row.flags)
            results.append(res)
        else:
            bad.append(why)
    return results, bad


def of_protocol(layout: Layout, results: list[Result]) -> list[Result]:
    """The results made under the table's protocol, each named as the table names it (without
    the card's tag); a result of another protocol is not this table's."""
    tag = "" if layout.protocol == DEFAULT_PROTOCOL else f"@{layout.protocol}"
    return [replace(res, encoder=res.encoder.removesuffix(tag)) for res in results
            if protocol_of(res.record) == layout.protocol]  # fmt: skip


def _claims(layout: Layout, results: list[Result]) -> dict[tuple[str, str], Result]:
    """The result of each cell of the table; two files for one cell is an error."""
    wanted = {layout.cell_key(r, c) for r in layout.rows for c in layout.cols}
    mine = [res for res in of_protocol(layout, results) if (res.encoder, res.dataset) in wanted]
    return claims(mine, key=lambda r: (r.encoder, r.dataset), path=lambda r: r.path)


def _pairs(layout: Layout, claims: dict, published: dict, bootstrap: dict) -> list[PairDiff]:
    """Each encoder against the layout's first one, on every dataset both have a result for."""
    encoders = layout.cols if layout.row_key == "dataset" else layout.rows
    datasets = layout.rows if layout.row_key == "dataset" else layout.cols
    out = []
    for other in encoders[1:]:
        for ds in datasets:
            a, b = claims.get((encoders[0], ds)), claims.get((other, ds))
            if a is not None and b is not None:
                metric = protocol_metric(ds, published) or a.metric
                out.append(pair(a, b, metric=metric, **bootstrap))
    return out


def build_table(
    layout: Layout,
    *,
    results_dirs: list[str | Path],
    published_dir: str | Path | None = None,
    ci: bool = True,
    bootstrap: dict | None = None,
) -> TableData:
    published = read_published(Path(published_dir or default_published()) / layout.published)
    results, bad = scan_results(results_dirs)
    claims = _claims(layout, results)
    table = TableData(layout=layout, cells={}, bad_files=bad, ci=ci)
    if layout.grid:
        table.grid_command = grid_command(layout.grid, results_dirs[0])
    for row in layout.rows:
        for col in layout.cols:
            enc, ds = layout.cell_key(row, col)
            pub, res = published_for(published, enc, ds), claims.get((enc, ds))
            cell = table.cells[(row, col)] = Cell(published=pub.score if pub else None)
            metric = protocol_metric(ds, published)
            if res is not None and metric is not None and res.metric != metric:
                table.refused.append(
                    f"{res.path}: scored with {res.metric}, but the protocol's metric for "
                    f"{ds} is {metric}; rerun it: `{layout.fill(enc, ds, results_dirs[0])}`"
                )
                res = None
                claims.pop((enc, ds))
            if res is None:
                table.missing.append((enc, ds, layout.fill(enc, ds, results_dirs[0])))
            else:
                cell.ours, cell.path, cell.flags = res.score, res.path, res.flags
                cell.ci = res.record.get("score_ci")
                cell.level = stats.interval_level(res.record, res.path) if cell.ci else None
            if pub and pub.source not in table.sources:
                table.sources.append(pub.source)
            if pub and pub.note:
                table.notes.append(f"{layout.label(enc)} on {layout.label(ds)}: {pub.note}")
    if ci:
        table.levels = _levels(table)
        options = stats.pair_options(bootstrap)
        table.pair_level = float(options["level"])
        table.pairs = _pairs(layout, claims, published, options)
    return table


def _levels(table: TableData) -> dict[str, float]:
    """Each column's one interval level (a column mixing levels is refused)."""
    lay = table.layout
    cols = {col: [table.cells[(row, col)] for row in lay.rows] for col in lay.cols}
    return {col: stats.column_level(lay.label(col), [(c.path, c.level) for c in cells if c.level])
            for col, cells in cols.items()}  # fmt: skip
