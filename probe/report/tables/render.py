"""Markdown, CSV and LaTeX text of a table, formatted as the paper does.

Two decimals; a dash for a missing score; the best score per row (or per column, for tables
whose rows are encoders) in bold, ours and published each compared among themselves. A score
that is not a plain protocol run carries a dagger (the character in markdown, `$^{\\dagger}$`
in LaTeX) and is listed under the table with its file and the reasons. Below the markdown
table: the missing cells with the command that fills each, refused and unreadable result
files, and the sources of the published numbers.
"""

from __future__ import annotations

import csv
import io

from probe.report.tables.data import TableData

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
    return head


def _row_text(
    table: TableData, row: str, best: set, *, bold: str, dash: str, dagger: str
) -> list[str]:
    out = [table.layout.label(row)]
    for col in table.layout.cols:
        cell = table.cells[(row, col)]
        for kind in KINDS:
            text = fmt(getattr(cell, kind))
            if text is not None and (row, col, kind) in best:
                text = bold.format(text)
            if text is not None and kind == "ours" and cell.flags:
                text += dagger
            out.append(text or dash)
        out.append(fmt(cell.diff, signed=True) or dash)
    return out


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
    lines: list[str] = []
    marked = flagged(table)
    if marked:
        lines += ["", f"{DAGGER} Not a plain protocol run ({len(marked)}):"]
        lines += [f"- {e} on {d} (`{p}`): {'; '.join(r)}" for e, d, p, r in marked]
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
        cells = _row_text(table, row, best, bold="**{}**", dash="-", dagger=DAGGER)
        lines.append("| " + " | ".join(cells) + " |")
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


_TEX_ESCAPES = {"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{",
                "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "\\": r"\textbackslash{}"}  # fmt: skip
TEX_DAGGER = r"$^{\dagger}$"


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
        cells = _row_text(table, row, best, bold=r"\textbf{{{}}}", dash="--", dagger=TEX_DAGGER)
        lines.append(" & ".join([tex_escape(cells[0]), *cells[1:]]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines + _tex_flag_notes(table) + [""])


def _tex_flag_notes(table: TableData) -> list[str]:
    """Below the tabular, visible: each flagged cell, its result file and the reasons."""
    marked = flagged(table)
    if not marked:
        return []
    lines = [r"\par\smallskip{\footnotesize" + TEX_DAGGER + " not a plain protocol run:"]
    for enc, ds, path, reasons in marked:
        what = tex_escape(f"{enc} on {ds}") + r" (\texttt{" + tex_escape(path) + "}): "
        lines.append(r"\\" + what + tex_escape("; ".join(reasons)))
    return [*lines, "}"]
