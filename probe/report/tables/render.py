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
from probe.report.tables.stats import PairDiff

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
        head += ["reproduced"] if table.ci else []
    return head + [_pair_title(table, enc) for enc in _pair_columns(table)]


def _pair_columns(table: TableData) -> list[str]:
    """Encoders compared with the first one in a column of their own (dataset-row tables)."""
    lay = table.layout
    return list(lay.cols[1:]) if table.ci and lay.row_key == "dataset" else []


def _pair_title(table: TableData, other: str) -> str:
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


def _row_text(
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
            out.append(_yes_no(cell.reproduced) or dash)
    for other in _pair_columns(table):
        out.append(_pair_text(_pair_for(table, other, row)) or dash)
    return out


def reproduced_counts(table: TableData) -> list[tuple[str, int, int]]:
    """(encoder label, cells inside our interval, cells with both numbers) per encoder."""
    lay, out = table.layout, []
    encoders = lay.cols if lay.row_key == "dataset" else lay.rows
    for enc in encoders:
        cells = [table.cells[(r, c)] for r in lay.rows for c in lay.cols
                 if lay.cell_key(r, c)[0] == enc]  # fmt: skip
        known = [c.reproduced for c in cells if c.reproduced is not None]
        if known:
            out.append((lay.label(enc), sum(known), len(known)))
    return out


def _stats_notes(table: TableData) -> list[str]:
    if not table.ci:
        return []
    lines = []
    for enc, hit, total in reproduced_counts(table):
        lines.append(f"{enc}: {hit} of {total} cells reproduce the published number within our "
                     "95% interval.")  # fmt: skip
    lay = table.layout
    if table.pairs:
        lines += ["", "Paired differences of our scores (95% bootstrap over the same test "
                  "images; n.s.: the interval contains 0):"]  # fmt: skip
    for d in table.pairs:
        what = f"- {lay.label(d.a)} - {lay.label(d.b)} on {lay.label(d.dataset)}: "
        if d.interval is None:
            lines.append(what + f"not compared ({d.why})")
        else:
            low, high = d.interval
            sig = "significant" if d.significant else "n.s."
            lines.append(what + f"{d.diff:+.2f} [{low:+.2f}, {high:+.2f}], {sig}")
    return ["", "Ours is score ± half the 95% bootstrap interval.", *lines] if lines else []


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
        cells = _row_text(table, row, best, bold="**{}**", dash="-", dagger=DAGGER, pm=" ± ")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + notes_markdown(table) + "\n"


def to_csv(table: TableData) -> str:
    """Machine-readable: config names, numbers rounded to two decimals, empty when missing."""
    lay = table.layout
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    header = [lay.row_key, "label"]
    for col in lay.cols:
        header += [f"{col}", f"{col}_low", f"{col}_high", f"{col}_published", f"{col}_diff",
                   f"{col}_reproduced"]  # fmt: skip
    for other in _pair_columns(table):
        name = f"{lay.cols[0]}_minus_{other}"
        header += [name, f"{name}_low", f"{name}_high", f"{name}_significant"]
    writer.writerow(header)
    for row in lay.rows:
        line = [row, lay.label(row)]
        for col in lay.cols:
            cell = table.cells[(row, col)]
            low, high = cell.ci if cell.ci is not None else (None, None)
            line += [fmt(cell.ours), fmt(low), fmt(high), fmt(cell.published),
                     fmt(cell.diff, signed=True), _yes_no(cell.reproduced)]  # fmt: skip
        for other in _pair_columns(table):
            d = _pair_for(table, other, row)
            low, high = d.interval if d is not None and d.interval else (None, None)
            sig = None if d is None else _yes_no(d.significant)
            line += [fmt(d.diff if d else None, signed=True), fmt(low, signed=True),
                     fmt(high, signed=True), sig]  # fmt: skip
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
    n, w = len(lay.cols), 4 if table.ci else 3
    sub = ["ours", "published", r"$\Delta$"] + (["repr."] if table.ci else [])
    pairs = [tex_escape(_pair_title(table, o)) for o in _pair_columns(table)]
    lines = [
        f"% {tex_escape(lay.title)}",
        r"\begin{tabular}{l" + "r" * (w * n + len(pairs)) + "}",
        r"\toprule",
        " & ".join(
            [
                "",
                *(rf"\multicolumn{{{w}}}{{c}}{{{tex_escape(lay.label(c))}}}" for c in lay.cols),
                *[""] * len(pairs),
            ]
        )
        + r" \\",
        "".join(rf"\cmidrule(lr){{{2 + w * i}-{1 + w * (i + 1)}}}" for i in range(n)),
        " & ".join([tex_escape(lay.row_key.capitalize())] + sub * n + pairs) + r" \\",
        r"\midrule",
    ]
    for row in lay.rows:
        cells = _row_text(table, row, best, bold=r"\textbf{{{}}}", dash="--", dagger=TEX_DAGGER,
                          pm=r" $\pm$ ")  # fmt: skip
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
