"""An encoder's results as the `model-index` block of a Hugging Face model card.

`python -m probe.table format=model-index card=ENCODER` (or `probe.model_index`) writes, for
every done result of the encoder (`probe.load_results`), one entry: the task (the evaluation
and its protocol named), the dataset and split, and the metric with its value, its interval
and the C or k chosen on val. Results that are not plain protocol runs (a dagger in the
tables) are left out unless asked for, and then carry their reasons, so a card never shows a
tweaked run as the protocol's number.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from probe import __version__
from probe.core.errors import ProbeError
from probe.report.tables.frame import load_results

TASKS = {
    "linear": "Linear probe (CLIP paper protocol: logistic regression, C searched on val)",
    "knn": "k-NN probe (dinov2's weighted k-NN, k chosen on val)",
    "fewshot": "Few-shot linear probe (CLIP search on a k-per-class val draw)",
}
METRICS = {"top1": ("accuracy", "top-1 accuracy"),
           "mean_per_class": ("mean_per_class_accuracy", "mean per-class accuracy"),
           "map11": ("mean_average_precision", "11-point mAP (VOC 2007 devkit)"),
           "roc_auc": ("roc_auc", "ROC AUC (positive class: label 1)"),
           "top1_top5_mean": ("mean_top1_top5_accuracy",
                              "mean of top-1 and top-5 accuracy")}  # fmt: skip


def _entry(row: Any) -> dict[str, Any]:
    kind, label = METRICS[row.metric]
    args: dict[str, Any] = {}
    if row.score_low is not None:
        args[f"interval_{round(row.level * 100):g}"] = [round(row.score_low, 2),
                                                         round(row.score_high, 2)]  # fmt: skip
    if row.eval == "linear":
        args["C"] = row.C
    if row.eval == "knn":
        args["k"] = int(row.k)
    if row.eval == "fewshot":
        args["shots"] = int(max(row.record["by_k"], key=int))
    if row.flags:
        args["not_a_plain_protocol_run"] = list(row.flags)
    metric = {"type": kind, "value": round(float(row.score), 2),
              "name": f"{label}, test split", "args": args}  # fmt: skip
    return {
        "task": {"type": "image-classification", "name": TASKS[row.eval]},
        "dataset": {"name": row.dataset, "type": row.dataset, "split": "test"},
        "metrics": [metric],
        "source": {"name": f"probe-bench {__version__}, {Path(row.path).name}"},
    }


def model_index(
    results_dir: str | Path | Sequence[str | Path],
    encoder: str,
    *,
    evals: Sequence[str] = ("linear", "knn", "fewshot"),
    include_flagged: bool = False,
) -> str:
    """The `model-index:` YAML of `encoder`'s done results."""
    frame = load_results(results_dir, evals=evals)
    rows = [r for r in frame.itertuples(index=False) if r.encoder == encoder]
    if not rows:
        known = sorted(set(frame["encoder"]))
        raise ProbeError(f"encoder={encoder!r} has no done results in {results_dir}; results "
                         f"there are for: {', '.join(known) or 'none'}")  # fmt: skip
    kept = [r for r in rows if include_flagged or not r.flags]
    if not kept:
        raise ProbeError(f"every result of {encoder} is flagged (not a plain protocol run); "
                         "rerun it with the shipped settings, or include_flagged=true")  # fmt: skip
    block = {"model-index": [{"name": encoder, "results": [_entry(r) for r in kept]}]}
    return yaml.safe_dump(block, sort_keys=False, width=100)
