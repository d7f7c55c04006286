"""Markdown and CSV text of a table, formatted as the paper does (the LaTeX, from the same
cells: `latex`).

Two decimals; a dash for a missing score; the best score per row (or per column, for tables
whose rows are encoders) in bold, ours and published each compared among themselves. A score
that is not a plain protocol run carries a dagger (the character in markdown, `$^{\\dagger}$`
in LaTeX) and is listed under the table with its file and the reasons. Below the markdown
table: the missing cells with the command that fills each, refused and unreadable result
files, and the sources of the published numbers. Every interval is labelled with its level:
a cell's with its column's (the level its runs recorded), a paired difference's with the
table's `bootstrap.level`.
"""

from __future__ import annotations

import csv
import io

from probe.report.tables.data import TableData
from probe.report.tables.stats import PairDiff, percent

KINDS = ("ours", "published")
DAGGER = "\u2020"  # marks a score that is not a plain protocol run; reasons under the table


def fmt(value: float | None, *, signed: bool = False) -> str | None:
    if value is None:
        return None
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def best_cells(table: TableData) -> set[tuple[str, str, str]]:
    """(row, col, kind) of the best value in each row (or column) among >= 2 present values."""
    lay, best = table.layout, set()
    groups = (
        [[(r, c) for c in lay.cols] for r in lay.rows]
        if lay.bold == "row"
        else [[(r, c) for r in lay.rows] for c in lay.cols]
    )
    for group in groups:
        for kind in KINDS:
            vals = {rc: getattr(table.cells[rc], kind) for rc in group}
            present = {rc: round(v, 2) for rc, v in vals.items() if v is not None}
            if len(present) < 2:
                continue
            top = max(present.values())
            best.update((*rc, kind) for rc, v in present.items() if v == top)
    return best


def _header(table: TableData) -> list[str]:
    lay = table.layout
    head = [lay.row_key.capitalize()]
    for col in lay.cols:
        head += [f"{lay.label(col)} ours", f"{lay.label(col)} published", "diff"]
        head += [within_title(table, col)] if table.ci else []
    return head + [pair_title(table, enc) for enc in pair_columns(table)]


def within_title(table: TableData, col: str) -> str:
    """The heading of a column's published-within-our-interval verdicts, with its level."""
    return f"published within our {percent(table.levels[col])} interval"


def pair_columns(table: TableData) -> list[str]:
    """Encoders compared with the first one in a column of their own (dataset-row tables)."""
    lay = table.layout
    return list(lay.cols[1:]) if table.ci and lay.row_key == "dataset" else []


def pair_title(table: TableData, other: str) -> str:
    lay = table.layout
    return f"{lay.label(lay.cols[0])} - {lay.label(other)} (ours)"


def _pair_for(table: TableData, other: str, dataset: str) -> PairDiff | None:
    return next((p for p in table.pairs if p.b == other and p.dataset == dataset), None)


def _pair_text(diff: PairDiff | None) -> str | None:
    if diff is None or diff.interval is None:
        return None
    return fmt(diff.diff, signed=True) + ("" if diff.significant else " (n.s.)")


def _yes_no(value: bool | None) -> str | None:
    return None if value is None else ("yes" if value else "no")


def row_text(
    table: TableData, row: str, best: set, *, bold: str, dash: str, dagger: str, pm: str
) -> list[str]:
    out = [table.layout.label(row)]
    for col in table.layout.cols:
        cell = table.cells[(row, col)]
        for kind in KINDS:
            text = fmt(getattr(cell, kind))
            if text is not None and (row, col, kind) in best:
                text = bold.format(text)
            if text is not None and kind == "ours" and table.ci and cell.ci is not None:
                text += f"{pm}{(cell.ci[1] - cell.ci[0]) / 2:.2f}"
            if text is not None and kind == "ours" and cell.flags:
                text += dagger
            out.append(text or dash)
        out.append(fmt(cell.diff, signed=True) or dash)
        if table.ci:
            out.append(_yes_no(cell.published_within_ci) or dash)
    for other in pair_columns(table):
        out.append(_pair_text(_pair_for(table, other, row)) or dash)
    return out


def published_within_counts(table: TableData) -> list[tuple[str, float, int, int]]:
    """(encoder label, level, cells whose published number lies within our interval at that
    level, cells with both numbers) per encoder and level."""
    lay, out = table.layout, []
    encoders = lay.cols if lay.row_key == "dataset" else lay.rows
    for enc in encoders:
        cells = [table.cells[(r, c)] for r in lay.rows for c in lay.cols
                 if lay.cell_key(r, c)[0] == enc and table.cells[(r, c)].level]  # fmt: skip
        for level in sorted({c.level for c in cells}):
            known = [c.published_within_ci for c in cells if c.level == level]
            known = [k for k in known if k is not None]
            if known:
                out.append((lay.label(enc), level, sum(known), len(known)))
    return out


def interval_sentence(table: TableData) -> str:
    """What `score ± x` means: half our interval, at the level of each column's runs."""
    lay = table.layout
    shown = [c for c in lay.cols if any(table.cells[(r, c)].level for r in lay.rows)]
    levels = {table.levels[c] for c in shown or lay.cols}
    what = "the bootstrap interval of the test score (test images resampled)"
    if len(levels) == 1:
        what = what.replace("the ", f"the {percent(levels.pop())} ", 1)
    else:
        what += " at its column's level: " + ", ".join(
            f"{lay.label(c)} {percent(table.levels[c])}" for c in shown)  # fmt: skip
    return (f"Ours is score ± half {what}. Published within our interval: whether the "
            "published number lies inside it, a heuristic, not a test of reproduction "
            "(docs/tables.md).")  # fmt: skip


def _stats_notes(table: TableData) -> list[str]:
    if not table.ci:
        return []
    lines = [f"{enc}: published within our {percent(level)} interval in {hit} of {total} cells."
             for enc, level, hit, total in published_within_counts(table)]  # fmt: skip
    lay = table.layout
    if table.pairs:
        lines += ["", f"Paired differences of our scores ({percent(table.pair_level)} bootstrap "
                  "over the same test images; n.s.: the interval contains 0):"]  # fmt: skip
    for d in table.pairs:
        what = f"- {lay.label(d.a)} - {lay.label(d.b)} on {lay.label(d.dataset)}: "
        if d.interval is None:
            lines.append(what + f"not compared ({d.why})")
        else:
            low, high = d.interval
            sig = "significant" if d.significant else "n.s."
            lines.append(what + f"{d.diff:+.2f} [{low:+.2f}, {high:+.2f}], {sig}")
    return ["", interval_sentence(table), *lines] if lines else []


def flagged(table: TableData) -> list[tuple[str, str, str, list[str]]]:
    """(encoder label, dataset label, result file, reasons) of each flagged cell, in order."""
    lay, out = table.layout, []
    for row in lay.rows:
        for col in lay.cols:
            cell = table.cells[(row, col)]
            if cell.ours is not None and cell.flags:
                enc, ds = lay.cell_key(row, col)
                out.append((lay.label(enc), lay.label(ds), str(cell.path), cell.flags))
    return out


def notes_markdown(table: TableData) -> str:
    lines: list[str] = _stats_notes(table)
    marked = flagged(table)
    if marked:
        lines += ["", f"{DAGGER} Not a plain protocol run ({len(marked)}):"]
        lines += [f"- {e} on {d} (`{p}`): {'; '.join(r)}" for e, d, p, r in marked]
    if table.missing:
        lines += ["", f"Missing ({len(table.missing)}), each filled by the command after it:"]
        lines += [f"- {enc} on {ds}: `{cmd}`" for enc, ds, cmd in table.missing]
        if table.grid_command:
            lines.append(f"- all of them as a SLURM array: `{table.grid_command}`")
    if table.refused:
        lines += ["", "Refused (metric differs from the protocol's):"]
        lines += [f"- {msg}" for msg in table.refused]
    if table.bad_files:
        lines += ["", "Result files that are not done (skipped), each with its fix:"]
        lines += [f"- {msg}" for msg in table.bad_files]
    if table.notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in table.notes]
    if table.sources:
        lines += ["", "Published numbers:"] + [f"- {s}" for s in table.sources]
    return "\n".join(lines)


def to_markdown(table: TableData) -> str:
    best = best_cells(table)
    head = _header(table)
    lines = [f"### {table.layout.title}", ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|---|" + "---:|" * (len(head) - 1))
    for row in table.layout.rows:
        cells = row_text(table, row, best, bold="**{}**", dash="-", dagger=DAGGER, pm=" ± ")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + notes_markdown(table) + "\n"


def to_csv(table: TableData) -> str:
    """Machine-readable: config names, numbers rounded to two decimals, empty when missing;
    each interval beside its level (`_ci_level`, e.g. 0.95)."""
    lay = table.layout
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    header = [lay.row_key, "label"]
    for col in lay.cols:
        header += [f"{col}", f"{col}_low", f"{col}_high", f"{col}_ci_level", f"{col}_published",
                   f"{col}_diff", f"{col}_published_within_ci"]  # fmt: skip
    for other in pair_columns(table):
        name = f"{lay.cols[0]}_minus_{other}"
        header += [name, f"{name}_low", f"{name}_high", f"{name}_ci_level", f"{name}_significant"]
    writer.writerow(header)
    for row in lay.rows:
        line = [row, lay.label(row)]
        for col in lay.cols:
            cell = table.cells[(row, col)]
            low, high = cell.ci if cell.ci is not None else (None, None)
            line += [fmt(cell.ours), fmt(low), fmt(high), cell.level, fmt(cell.published),
                     fmt(cell.diff, signed=True), _yes_no(cell.published_within_ci)]  # fmt: skip
        for other in pair_columns(table):
            d = _pair_for(table, other, row)
            low, high = d.interval if d is not None and d.interval else (None, None)
            sig = None if d is None else _yes_no(d.significant)
            level = table.pair_level if d is not None and d.interval else None
            line += [fmt(d.diff if d else None, signed=True), fmt(low, signed=True),
                     fmt(high, signed=True), level, sig]  # fmt: skip
        writer.writerow(["" if v is None else v for v in line])
    return buf.getvalue()
