"""The refitted head beside each result: `{results_dir}/{encoder}/{dataset}.npz`.

Holds `coef` (K x D), `intercept` (K; -inf for a class absent from the training data, which
can never be predicted), `C`, and for the test split `test_label`, `test_pred` and
`test_top5`. A trained head (`eval=attentive`, `eval=sgd_linear`: `{dataset}.{eval}.npz`)
holds its parameters by name, its `lr` and `wd`, and the same test outputs. Written
(atomically) before the result JSON, which names it with its SHA-256: a result never points
to a missing head, and a head from another run is told apart.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from probe.core.io import save_npz_atomic


def head_path(result: Path) -> Path:
    return result.with_suffix(".npz")


def write_head(result: Path, *, outputs: dict[str, np.ndarray], **arrays: Any) -> dict[str, Any]:
    """Write the head of the run whose result goes to `result`; returns the JSON's `head`.

    `arrays`: the head's own arrays by name (the linear probe: `coef`, `intercept`, `C`; a
    trained head, `eval=attentive` or `sgd_linear`: its parameters, `lr` and `wd`)."""
    path = save_npz_atomic(head_path(result), {**arrays, **outputs})
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
