"""The table as a dot plot: per row, our score (filled) against the published one (open).

Drawn on a bare `matplotlib.figure.Figure` with the Agg canvas: no pyplot, no display, no
global backend state, so it runs on headless cluster nodes and inside tests.
"""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from probe.report.tables.data import TableData


def to_png(table: TableData, *, dpi: int = 200) -> bytes:
    lay = table.layout
    n_rows, n_cols = len(lay.rows), len(lay.cols)
    fig = Figure(figsize=(max(4.0, 0.65 * n_rows + 1.6) + 2.2, 3.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colors = [f"C{i}" for i in range(n_cols)]
    width = 0.7 / max(n_cols, 1)
    for j, col in enumerate(lay.cols):
        offset = (j - (n_cols - 1) / 2) * width
        for kind, marker, face in (("ours", "o", colors[j]), ("published", "_", colors[j])):
            xs, ys = [], []
            for i, row in enumerate(lay.rows):
                value = getattr(table.cells[(row, col)], kind)
                if value is not None:
                    xs.append(i + offset)
                    ys.append(value)
            suffix = "ours" if kind == "ours" else "published"
            ax.scatter(
                xs, ys, marker=marker, s=60 if kind == "ours" else 220, color=face, zorder=3,
                linewidths=2, label=f"{lay.label(col)} ({suffix})",
            )  # fmt: skip
    ax.set_xticks(range(n_rows))
    ax.set_xticklabels([lay.label(r) for r in lay.rows], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("test score (%)")
    ax.set_xlim(-0.6, n_rows - 0.4)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(lay.title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
