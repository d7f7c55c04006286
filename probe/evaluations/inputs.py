"""What no evaluation is given: labels it cannot learn from, features its arithmetic cannot hold.

Checked once, where the cached features enter the probe stage (`probe.run.probe_stage`,
after the val carve and `probe.normalize`), so a bad input stops the run in one line before
any fit, whichever source the features came from (an image dataset, `dataset=npz`, a cache
filled by another run):

- labels: train must hold two classes or more (a one-class fit has nothing to separate:
  the solvers divide by zero, k-NN scores the constant), val too (C and k are chosen on it:
  on one class every choice ties), and no val or test label may be missing from train (no
  probe can ever predict it: the score would count a label-mapping mistake as the encoder's);
- magnitudes: every feature finite (the cache refuses non-finite rows when it is filled;
  this catches a damaged entry read with `extract.verify=false`), and for the linear
  protocols (`eval=linear`, `eval=fewshot`) the largest |feature| of each split within
  `LINEAR_RANGE`. k-NN and `probe.normalize=l2` are scale-free and computed so at any finite
  float32 magnitude; the linear protocol is not: its C grid (1e-6..1e6) and its absolute
  gradient rule (probe.tol=1e-4) are set for features near unit scale. docs/solvers.md,
  "Feature magnitudes", gives the limits and what was seen beyond them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.core.rows import BLOCK, Rows

# the largest |feature| of a split the linear protocols accept (probe.normalize=none): below,
# the null head W = 0 can already meet the gradient rule on a few-shot draw (scikit-learn
# returned chance as "converged" at 1e-7 on 300 rows); above, the float64 certificate cannot
# resolve tol=1e-4 on a million rows and no C on the grid regularises (C |x|^2 >= 1e6). Any
# unit-norm row of width <= 1e6 has a value >= 1e-3, so L2-normalised features always pass.
LINEAR_RANGE = (1e-3, 1e6)
LINEAR_EVALS = ("linear", "fewshot")
Pair = tuple[Any, np.ndarray]


def check_inputs(train: Pair, val: Pair, test: Pair, *, eval_name: str) -> None:
    """Refuse labels no probe can learn from and features outside what `eval_name` handles."""
    check_labels(train[1], val[1], test[1])
    for split, (X, _) in zip(("train", "val", "test"), (train, val, test), strict=True):
        check_magnitude(X, split=split, eval_name=eval_name)


def check_labels(y_train: np.ndarray, y_val: np.ndarray, y_test: np.ndarray) -> None:
    if np.ndim(y_train) == 2:
        return check_multilabel(y_train, y_val, y_test)
    seen = np.unique(np.asarray(y_train))
    if len(seen) < 2:
        raise ProbeError(
            f"the train split holds one class ({_listed(seen)}): a probe needs two or more; "
            "check the dataset's labels (dataset.path arrays, class folders)"
        )
    if len(np.unique(np.asarray(y_val))) < 2:
        raise ProbeError(
            f"the val split holds one class ({_listed(np.unique(y_val))}): C (k for eval=knn) "
            "is chosen on it and every choice ties; give a val split with two classes or more, "
            "or carve one from train (dataset.val.source=carve; an .npz without x_val, y_val)"
        )
    for split, y in (("val", y_val), ("test", y_test)):
        unseen = np.setdiff1d(np.unique(np.asarray(y)), seen)
        if len(unseen):
            raise ProbeError(
                f"{split} labels {_listed(unseen)} never occur in train ({len(seen)} classes): "
                "no probe can predict them; check that every split uses one label mapping"
            )


def check_multilabel(y_train: np.ndarray, y_val: np.ndarray, y_test: np.ndarray) -> None:
    """Multi-label flags (N x K of -1 absent, 0 difficult, 1 present): every split has the
    train's K columns, and each class is present and absent in train (its binary fit needs
    both; difficult counts as present, `probe.evaluations.multilabel.targets`)."""
    k = np.shape(y_train)[1]
    for split, y in (("val", y_val), ("test", y_test)):
        if np.ndim(y) != 2 or np.shape(y)[1] != k:
            raise ProbeError(
                f"{split} labels have shape {np.shape(y)} but train's are multi-label with {k} "
                "columns; check that every split uses one label layout"
            )
    present = np.asarray(y_train) != -1
    for what, bad in (("present", ~present.any(0)), ("absent", present.all(0))):
        if bad.any():
            raise ProbeError(
                f"class(es) {_listed(np.flatnonzero(bad))} are never {what} in train: their "
                "one-vs-rest fit has one class; every class needs images with and without it"
            )


def check_magnitude(X: Any, *, split: str, eval_name: str) -> float:
    """The largest |feature| of `X` (one pass in blocks); refused when it is not finite, or
    outside `LINEAR_RANGE` for the linear protocols."""
    top = largest(X)
    if not np.isfinite(top):
        raise ProbeError(
            f"the {split} features hold NaN or infinite values: the cache entry is damaged; "
            "delete it and rerun (extract.verify=true checks every entry before use)"
        )
    lo, hi = LINEAR_RANGE
    if eval_name in LINEAR_EVALS and not lo <= top <= hi:
        raise ProbeError(
            f"the largest |feature| in {split} is {top:.3g}, outside {lo:g}..{hi:g}, the range "
            f"eval={eval_name} handles (its C grid and tolerance are absolute: docs/solvers.md, "
            "Feature magnitudes); rescale the features (e.g. divide by their standard "
            "deviation), set probe.normalize=l2, or use eval=knn (scale-free)"
        )
    return top


def largest(X: Any) -> float:
    """max |x| over every row (NaN if any is NaN), read in blocks of `BLOCK` rows; token
    features (N x T x D) in blocks of about `BLOCK` x 1,024 values, in their own dtype."""
    if np.ndim(X) > 2:
        step = max(1, BLOCK * 1024 // int(np.prod(X.shape[1:])))
        blocks = (np.asarray(X[s : s + step]) for s in range(0, len(X), step))
    else:
        rows = Rows.of(X)
        blocks = (rows.read(s, s + BLOCK) for s in range(0, len(rows), BLOCK))
    top = 0.0
    for block in blocks:
        if block.size:
            here = float(np.max(np.abs(block)))
            if not np.isfinite(here):
                return here
            top = max(top, here)
    return top


def _listed(values: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")
