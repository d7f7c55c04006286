"""Markdown, CSV and LaTeX text of a table, formatted as the paper does.

Two decimals; a dash for a missing score; the best score per row (or per column, for tables
whose rows are encoders) in bold, ours and published each compared among themselves.
Below the markdown table: the missing cells with the command that fills each, refused and
unreadable result files, and the sources of the published numbers.
"""

from __future__ import annotations

import csv
import io

from probe.report.tables.data import TableData

KINDS = ("ours", "published")


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
    return head


def _row_text(table: TableData, row: str, best: set, *, bold: str, dash: str) -> list[str]:
    out = [table.layout.label(row)]
    for col in table.layout.cols:
        cell = table.cells[(row, col)]
        for kind in KINDS:
            text = fmt(getattr(cell, kind))
            if text is not None and (row, col, kind) in best:
                text = bold.format(text)
            out.append(text or dash)
        out.append(fmt(cell.diff, signed=True) or dash)
    return out


def notes_markdown(table: TableData) -> str:
    lines: list[str] = []
    if table.missing:
        lines += ["", f"Missing ({len(table.missing)}), each filled by the command after it:"]
        lines += [f"- {enc} on {ds}: `{cmd}`" for enc, ds, cmd in table.missing]
        if table.layout.grid:
            lines.append(
                f"- all of them as a SLURM array: `python -m probe.grid grid={table.layout.grid}`"
            )
    if table.refused:
        lines += ["", "Refused (metric differs from the protocol's):"]
        lines += [f"- {msg}" for msg in table.refused]
    if table.bad_files:
        lines += ["", "Unreadable result files (skipped):"]
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
        lines.append("| " + " | ".join(_row_text(table, row, best, bold="**{}**", dash="-")) + " |")
    return "\n".join(lines) + "\n" + notes_markdown(table) + "\n"


def to_csv(table: TableData) -> str:
    """Machine-readable: config names, numbers rounded to two decimals, empty when missing."""
    lay = table.layout
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    header = [lay.row_key, "label"]
    for col in lay.cols:
        header += [f"{col}", f"{col}_published", f"{col}_diff"]
    writer.writerow(header)
    for row in lay.rows:
        line = [row, lay.label(row)]
        for col in lay.cols:
            cell = table.cells[(row, col)]
            line += [fmt(cell.ours) or "", fmt(cell.published) or "", fmt(cell.diff, signed=True)]
        writer.writerow(["" if v is None else v for v in line])
    return buf.getvalue()


_TEX_ESCAPES = {"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$"}


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(table: TableData) -> str:
    """A booktabs tabular (needs \\usepackage{booktabs}), one group of 3 columns per column."""
    lay, best = table.layout, best_cells(table)
    n = len(lay.cols)
    lines = [
        f"% {tex_escape(lay.title)}",
        r"\begin{tabular}{l" + "rrr" * n + "}",
        r"\toprule",
        " & ".join(
            ["", *(rf"\multicolumn{{3}}{{c}}{{{tex_escape(lay.label(c))}}}" for c in lay.cols)]
        )
        + r" \\",
        "".join(rf"\cmidrule(lr){{{2 + 3 * i}-{4 + 3 * i}}}" for i in range(n)),
        " & ".join([tex_escape(lay.row_key.capitalize())] + ["ours", "published", r"$\Delta$"] * n)
        + r" \\",
        r"\midrule",
    ]
    for row in lay.rows:
        cells = _row_text(table, row, best, bold=r"\textbf{{{}}}", dash="--")
        lines.append(" & ".join([tex_escape(cells[0]), *cells[1:]]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)
