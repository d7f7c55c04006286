"""The probe as a library: the evaluations on arrays in memory, as plain-dict records.

`linear_probe`, `fewshot_probe` and `knn_probe` take `(X, y)` pairs (numpy arrays, memory
maps or torch tensors; labels of any values) and return the record the CLI would write for
the same features: score, interval, C or k, the search, the counts, and the provenance that
applies (library versions, harness commit, time; no weights or cache entries, since the
features came from the caller). `results_dir=` also writes it, and the linear head beside it,
where the CLI would: `{results_dir}/{encoder}/{dataset}[.eval].json`.

One code path: the CLI's probe stage (`probe.run.probe_stage`) builds its `Task` from the
feature cache and calls `evaluate` and `save` below, exactly as these functions do with the
caller's arrays. `LinearProbe` (the scikit-learn estimator) fits with the same protocol parts.
`load_results` gives every result under a results dir as a pandas DataFrame (the tables read
theirs from it); `model_index` an encoder's results as a model card's `model-index` block.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probe.core import preempt
from probe.core.device import resolve_device
from probe.core.names import check_run_names
from probe.core.rows import Rows
from probe.datasets.base import check_metric_classes
from probe.datasets.splits import stratified_holdout
from probe.evaluations import fewshot, knn, linear
from probe.evaluations.estimator import LinearProbe
from probe.evaluations.inputs import check_inputs
from probe.evaluations.metrics import refuse_score_metric
from probe.evaluations.multilabel import refuse_single_label
from probe.evaluations.outcome import Outcome, Task, bootstrap_options
from probe.report.heads import write_head
from probe.report.record import result_path, stamp, write_result
from probe.report.tables.frame import load_results
from probe.report.tables.model_index import model_index
from probe.solvers.shipped import build_backend

__all__ = ["LinearProbe", "evaluate", "fewshot_probe", "knn_probe", "linear_probe",
           "load_results", "model_index", "save"]  # fmt: skip
Pair = tuple[Any, Any]


def evaluate(
    task: Task,
    evaluation: Callable[[Task], Outcome],
    *,
    name: str,
    encoder: str,
    dataset: str,
    protocol: str = "clip",
) -> tuple[dict[str, Any], Outcome]:
    """One evaluation (`name`: linear, fewshot, knn) on a task, its inputs checked first:
    the fields every result has, whoever made the arrays. `protocol`: the card whose rules
    the task carries (`configs/protocol/`; the Python API runs the CLIP paper's)."""
    refuse_single_label(metric=task.metric, eval_name=name, dataset=dataset)
    refuse_score_metric(metric=task.metric, eval_name=name, dataset=dataset)
    check_metric_classes(dataset=dataset, metric=task.metric, num_classes=task.num_classes)
    check_inputs(task.train, task.val, task.test, eval_name=name)
    start = time.perf_counter()
    outcome = evaluation(task)
    record = {
        "encoder": encoder,
        "dataset": dataset,
        "eval": outcome.eval,
        "protocol": protocol,
        "metric": task.metric,
        **outcome.fields,
        "n_train": len(task.train[1]),
        "n_val": len(task.val[1]),
        "n_test": len(task.test[1]),
        "num_classes": task.num_classes,
        "feature_dim": int(task.train[0].shape[-1]),  # the width (of each token, for tokens)
        "backend": outcome.backend,
        "device": task.device,
        "seconds": {"extract": 0.0, "probe": round(time.perf_counter() - start, 3)},
    }
    return record, outcome


def save(path: Path, record: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    """The head (if the evaluation has one), then the result, each written atomically: a
    result never names a head that is not there. Returns the record with its `path`."""
    preempt.checkpoint("stopped before the result was written")  # nothing is, then
    if outcome.head is not None:  # the .npz beside the JSON: head, test predictions, SHA-256
        record["head"] = write_head(path, **outcome.head)
    record["path"] = str(write_result(path, record))
    return record


def linear_probe(train: Pair, test: Pair, val: Pair | None = None, **options: Any) -> dict:
    """The CLIP paper's linear probe: C searched on val, refit on train + val, test scored
    with its interval. `options`: see `run_arrays`."""
    return run_arrays(linear.evaluate, "linear", train=train, val=val, test=test, **options)


def fewshot_probe(
    train: Pair,
    test: Pair,
    val: Pair | None = None,
    *,
    shots: Sequence[int] = (1, 2, 4, 8, 16),
    seeds: int = 5,
    **options: Any,
) -> dict:
    """k images per class from train, C on a k-per-class draw from val, every k and seed."""
    evaluation = partial(fewshot.evaluate, shots=shots, seeds=seeds)
    return run_arrays(evaluation, "fewshot", train=train, val=val, test=test, **options)


def knn_probe(
    train: Pair,
    test: Pair,
    val: Pair | None = None,
    *,
    k: Sequence[int] = (10, 20, 100, 200),
    temperature: float = 0.07,
    **options: Any,
) -> dict:
    """dinov2's weighted k-NN: k chosen on val (bank train), test at it (bank train + val)."""
    evaluation = partial(knn.evaluate, k=k, temperature=temperature)
    return run_arrays(evaluation, "knn", train=train, val=val, test=test, **options)


def run_arrays(
    evaluation: Callable[[Task], Outcome],
    name: str,
    *,
    train: Pair,
    val: Pair | None,
    test: Pair,
    metric: str = "top1",
    backend: str = "torch",
    device: str = "auto",
    bootstrap: dict[str, Any] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    encoder: str = "arrays",
    dataset: str = "arrays",
    results_dir: str | Path | None = None,
) -> dict[str, Any]:
    """An evaluation on the caller's arrays. Without `val`, val is the protocol's seeded,
    class-stratified carve of `val_fraction` of train (the CLI's default, `seed` 0)."""
    if results_dir is not None:  # the names become a folder and a file: checked first
        check_run_names({"encoder": {"name": encoder}, "dataset": {"name": dataset}})
    (Xtr, ytr), (Xte, yte) = _pair(train, "train"), _pair(test, "test")
    given = _pair(val, "val") if val is not None else None
    classes = np.unique(np.concatenate([ytr, yte, *([given[1]] if given else [])]))
    ytr, yte = np.searchsorted(classes, ytr), np.searchsorted(classes, yte)
    if given is None:
        keep, hold = stratified_holdout(ytr, fraction=val_fraction, seed=seed)
        tr, va = (Rows.of(Xtr, keep), ytr[keep]), (Rows.of(Xtr, hold), ytr[hold])
    else:
        tr, va = (Xtr, ytr), (given[0], np.searchsorted(classes, given[1]))
    device = resolve_device(device)
    task = Task(train=tr, val=va, test=(Xte, yte), num_classes=len(classes), metric=metric,
                device=device, make_solver=lambda: build_backend(backend, device=device),
                bootstrap=bootstrap_options(bootstrap))  # fmt: skip
    record, outcome = evaluate(task, evaluation, name=name, encoder=encoder, dataset=dataset)
    record.update({
        "dataset_info": {"source": "arrays given to the Python API"},
        "feature": None,
        "normalize": "none",
        "dtype": str(np.dtype(Xtr.dtype)),
        "weights": None,  # the caller's features: no weights or cache entries to name
        "features": None,
        "test_content_hash": None,
        "classes": classes.tolist(),  # label value of each class index in the record
        "config": {"api": True, "backend": backend, "metric": metric,
                   "bootstrap": bootstrap_options(bootstrap),
                   "val": "given" if given else {"fraction": val_fraction, "seed": seed}},
    })  # fmt: skip
    if results_dir is None:
        return stamp(record)
    return save(result_path(results_dir, encoder, dataset, outcome.eval), record, outcome)


def _pair(pair: Pair, name: str) -> tuple[Any, np.ndarray]:
    """(X as 2-D float rows on the host, y as a 1-D array of labels), checked."""
    try:
        X, y = pair
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an (X, y) pair") from None
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    X = X if isinstance(X, np.memmap) else np.asarray(X)
    y = y.cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if X.ndim != 2 or not np.issubdtype(X.dtype, np.floating):
        raise ValueError(f"{name}: X has shape {X.shape} and dtype {X.dtype}; expected 2-D "
                         "float features (n_samples, n_features)")  # fmt: skip
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"{name}: y has shape {y.shape} for {len(X)} rows; give one label each")
    for s in range(0, len(X), 65536):  # in chunks: a memory map is never read whole at once
        if not np.isfinite(X[s : s + 65536]).all():
            raise ValueError(f"{name}: X contains NaN or infinity; drop or impute those rows")
    return X, y
