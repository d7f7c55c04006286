"""The solver bench's table and JSON: one row per backend and problem, peers beside torch.

Beyond seconds, passes and convergence, each row that is not torch says how many times
faster torch was (`torch x`) and at how many of the C values both searched torch's float64
objective was at or below that backend's (`torch obj <=`, with the largest relative
difference: positive means torch above). A peer that could not run prints `n/a` and why.
"""

from __future__ import annotations

from typing import Any

COLUMNS = ("problem", "shape", "backend", "device", "seconds", "speedup", "torch x", "test %",
           "C", "gap", "obj <= sklearn", "torch obj <=", "converged", "passes", "iterations",
           "f32 time", "f64 time")  # fmt: skip
LEGEND = (
    "speedup: sklearn's seconds over this row's; torch x: this row's seconds over torch's; "
    "gap: (objective - tight optimum) / optimum at the chosen C, float64; "
    "obj <= sklearn: searched C values where this row's objective is at or below sklearn's "
    "(to 1e-12 relative, float64 rounding); torch obj <=: the same for torch's objective "
    "against this row's, with the largest relative difference (+: torch above); "
    "converged: fits (search and refit) meeting the paper's gradient rule by our float64 "
    "certificate; passes: matmul pairs over X (torch: float32 and float64 passes and the "
    "float64 certificates; sklearn and sklearnex: scipy's loss-and-gradient calls; cyanure: "
    "its epochs); iterations: optimiser iterations of the search and the refit (cyanure: "
    "epochs); f32/f64 time: share of the seconds spent in passes of that precision"
)


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---" * len(COLUMNS) + "|"]
    for res in results:
        for r in res["rows"]:
            lines.append(_row(res, r))
    return "\n".join(lines)


def _row(res: dict[str, Any], r: dict[str, Any]) -> str:
    if "seconds" not in r:  # a peer that could not run here
        cells = [res["problem"], res["shape"], r["backend"], f"n/a: {r['why_na']}"]
        return "| " + " | ".join(cells) + " |" + " |" * (len(COLUMNS) - len(cells))
    cells = [
        res["problem"], res["shape"], r["backend"], r["device"], f"{r['seconds']:.1f}",
        _na(r["speedup"], "{:.1f}x"), _na(r.get("torch_speedup"), "{:.1f}x"),
        f"{r['test']:.2f}", f"{r['C']:.3g}", f"{r['gap']:.1e}", _versus(r.get("vs_sklearn")),
        _versus(r.get("torch_vs"), signed=True),
        f"{r['converged']['converged']}/{r['converged']['fits']}", _na(r["passes"], "{:,}"),
        f"{r['iterations']:,}", _na(r["f32_share"], "{:.0%}"), _na(r["f64_share"], "{:.0%}"),
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def _versus(vs: dict[str, Any] | None, *, signed: bool = False) -> str:
    if not vs:
        return "-"
    text = f"{vs['at_or_below']}/{vs['common_C']} C"
    if signed and vs["max_rel_diff"] is not None:
        text += f" ({vs['max_rel_diff']:+.1e})"
    return text


def _na(value: Any, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def jsonable(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = ("backend", "device", "seconds", "speedup", "torch_speedup", "test", "C", "gap",
            "vs_sklearn", "torch_vs", "search", "objectives", "converged", "passes",
            "passes_by_kind", "iterations", "f32_share", "f64_share", "why_na")  # fmt: skip
    return [
        {
            **{k: v for k, v in res.items() if k != "rows"},
            "rows": [{k: r.get(k) for k in keep if k in r} for r in res["rows"]],
        }
        for res in results
    ]
