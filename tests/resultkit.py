"""Hand-written result files that count as done (`probe.report.done`): every field a run
writes, and for a linear result a head beside it whose SHA-256 the record names."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

FILLER: dict[str, Any] = {
    "metric": "top1", "n_train": 8, "n_val": 2, "n_test": 4, "num_classes": 2,
    "feature_dim": 3, "dtype": "float32", "weights": None,
    "seconds": {"extract": 0.0, "probe": 0.0}, "features": {}, "config": None,
    "versions": {}, "git": None, "created": "2026-01-01T00:00:00+00:00",
}  # fmt: skip
BY_EVAL: dict[str, dict[str, Any]] = {
    "linear": {"score": 50.0, "score_ci": None, "top5": 100.0, "C": 1.0, "search": [],
               "backend": "torch"},
    "fewshot": {"by_k": {}, "backend": "torch"},
    "knn": {"score": 50.0, "score_ci": [40.0, 60.0], "k": 10, "val_score_by_k": {},
            "test_score_by_k": {}, "temperature": 0.07},
}  # fmt: skip


def write_head(result: Path) -> dict[str, str]:
    """A small head `.npz` beside `result`; the `head` field that names it."""
    head = result.with_suffix(".npz")
    head.parent.mkdir(parents=True, exist_ok=True)
    labels = np.zeros(4, dtype=np.int64)
    np.savez(head, coef=np.zeros((2, 3)), intercept=np.zeros(2), C=np.float64(1.0),
             test_label=labels, test_pred=labels)  # fmt: skip
    return {"path": str(head), "sha256": hashlib.sha256(head.read_bytes()).hexdigest()}


def complete(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """`record` with the fields it lacks filled in (a head beside `path` for a linear one)."""
    evaluation = record.get("eval", "linear")
    out = {"eval": evaluation, **FILLER, **BY_EVAL.get(evaluation, {}), **record}
    if evaluation == "linear" and "head" not in record:
        out["head"] = write_head(path)
    return out


def write_result(path: Path, record: dict[str, Any]) -> Path:
    """`record`, completed, as the result file at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(complete(path, record)))
    return path


def done_result(root: Path, encoder: str, dataset: str, evaluation: str = "linear",
                **fields: Any) -> Path:  # fmt: skip
    """A done result of (encoder, dataset, evaluation) where a run files it under `root`."""
    suffix = "" if evaluation == "linear" else f".{evaluation}"
    record = {"encoder": encoder, "dataset": dataset, "eval": evaluation, **fields}
    return write_result(root / encoder / f"{dataset}{suffix}.json", record)
