"""The LaTeX of a paper table: a booktabs tabular, the same cells as the markdown, and below
it what the intervals mean (with their levels) and each flagged cell with its reasons."""

from __future__ import annotations

from probe.report.tables.data import TableData
from probe.report.tables.render import (
    best_cells,
    flagged,
    interval_sentence,
    pair_columns,
    pair_title,
    row_text,
)
from probe.report.tables.stats import percent

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
    sub = [["ours", "published", r"$\Delta$"] + ([_within(table, c)] if table.ci else [])
           for c in lay.cols]  # fmt: skip
    pairs = [tex_escape(pair_title(table, o)) for o in pair_columns(table)]
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
        " & ".join([tex_escape(lay.row_key.capitalize())] + sum(sub, []) + pairs) + r" \\",
        r"\midrule",
    ]
    for row in lay.rows:
        cells = row_text(table, row, best, bold=r"\textbf{{{}}}", dash="--", dagger=TEX_DAGGER,
                          pm=r" $\pm$ ")  # fmt: skip
        lines.append(" & ".join([tex_escape(cells[0]), *cells[1:]]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines + _tex_ci_note(table) + _tex_flag_notes(table) + [""])


def _within(table: TableData, col: str) -> str:
    return tex_escape(f"pub. within {percent(table.levels[col])} CI")


def _tex_ci_note(table: TableData) -> list[str]:
    """Below the tabular: what `score ± x` and `pub. within` mean, with their levels."""
    if not table.ci:
        return []
    text = tex_escape(interval_sentence(table)).replace("±", r"$\pm$")
    return [r"\par\smallskip{\footnotesize " + text + "}"]


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
