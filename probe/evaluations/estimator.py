"""`LinearProbe`: the CLIP paper's linear probe as a scikit-learn estimator.

Multinomial L2 logistic regression with the paper's objective and certified stopping rule
(`probe.solvers`), fitted by the same parts the CLI runs (`linear.select_C`, `linear.refit`):
with `C="search"` the CLIP search picks C on a validation split (the `X_val`, `y_val` given to
`fit`, else the protocol's seeded stratified carve of `X`) and the head is refitted on train +
val at that C; with a number, one fit on `X` at that C. The backend is built from the shipped
`configs/probe/{backend}.yaml`, as a run's is, with `tol` and `max_iter` from here.

scikit-learn's conventions: `__init__` only stores; parameters and arrays are checked at
`fit` (a one-line `ValueError` naming the array or parameter and the fix); fitted attributes
end in `_`; labels may be any values (`classes_`), mapped back by `predict`; with two classes
`coef_` is one row (the binomial form, as `LogisticRegression` gives it). `X` may be a numpy
array, a memory map (row selections, never copied whole) or a torch tensor, on CPU or GPU
(fitted and scored on its own device with the torch backend, with no trip through host
memory).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, column_or_1d, validate_data

from probe.core.device import resolve_device
from probe.core.rows import Rows
from probe.datasets.splits import stratified_holdout
from probe.evaluations.linear import refit, select_C
from probe.evaluations.metrics import score as metric_score
from probe.solvers.shipped import backends, build_backend

METRICS = ("top1", "mean_per_class")


def _tensor(X: torch.Tensor, name: str) -> torch.Tensor:
    """A torch tensor checked as finite, 2-D and floating, on its own device."""
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} has shape {tuple(X.shape)}; expected a non-empty 2-D "
                         "(n_samples, n_features) tensor. Reshape your data, e.g. "
                         "X.reshape(len(X), -1)")  # fmt: skip
    X = X if X.is_floating_point() else X.float()
    if not bool(torch.isfinite(X).all()):
        raise ValueError(f"Input {name} contains NaN or infinity; drop or impute those rows")
    return X


def _features(est: Any, X: Any, *, reset: bool, name: str = "X") -> Any:
    """X checked as scikit-learn checks it (its messages, `n_features_in_`); a torch tensor
    stays one, on its device, and a float memory map stays a memory map (read in rows)."""
    if isinstance(X, torch.Tensor):
        X = _tensor(X, name)
        if reset:
            est.n_features_in_ = int(X.shape[1])
        elif X.shape[1] != est.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(est).__name__} is "
                             f"expecting {est.n_features_in_} features as input")  # fmt: skip
        return X
    try:
        if name == "X":
            checked = validate_data(est, X, reset=reset, dtype=[np.float32, np.float64])
        else:
            checked = check_array(X, dtype=[np.float32, np.float64], input_name=name)
    except ValueError as err:  # scikit-learn's own words, on one line
        if "got 1D array" in str(err):  # without the array it prints
            raise ValueError(f"{name} is 1-D; expected 2-D. Reshape your data: "
                             "X.reshape(-1, 1) for one feature, X.reshape(1, -1) for one "
                             "sample") from None  # fmt: skip
        raise ValueError(" ".join(str(err).split())) from None
    memmap = isinstance(X, np.memmap) and X.dtype in (np.float32, np.float64) and X.ndim == 2
    return X if memmap else checked


def _labels(y: Any, n: int, name: str) -> np.ndarray:
    y = y.cpu().numpy() if isinstance(y, torch.Tensor) else y
    if y is None:
        raise ValueError(f"{LinearProbe.__name__} requires y to be passed, but the target y "
                         "is None")  # fmt: skip
    y = column_or_1d(y, warn=True)
    if len(y) != n:
        raise ValueError(f"{name} has {len(y)} labels for {n} samples; give one per row")
    check_classification_targets(y)
    return y


def _rows(X: np.ndarray | torch.Tensor, index: np.ndarray) -> Any:
    if isinstance(X, torch.Tensor):
        return X[torch.as_tensor(index, device=X.device)]
    return Rows.of(X, index)


def _cat(a: Any, b: Any) -> Any:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            raise ValueError("X and X_val must both be torch tensors or both arrays")
        return torch.cat([a, b.to(a.device)])
    return Rows.cat(a, b)


class LinearProbe(ClassifierMixin, BaseEstimator):
    """The CLIP linear probe: `C="search"` (on `X_val`/`y_val` or a seeded 20% carve), or a
    number. `metric` chooses C on val and is what `score` returns (0-1, as scikit-learn's)."""

    def __init__(
        self,
        C: float | str = "search",
        *,
        backend: str = "torch",
        device: str = "auto",
        tol: float = 1e-4,
        max_iter: int = 1000,
        metric: str = "top1",
        val_fraction: float = 0.2,
        seed: int = 0,
    ) -> None:
        self.C = C
        self.backend = backend
        self.device = device
        self.tol = tol
        self.max_iter = max_iter
        self.metric = metric
        self.val_fraction = val_fraction
        self.seed = seed

    # -- checks ---------------------------------------------------------------------------
    def _check_params(self) -> None:
        if not (self.C == "search" or (isinstance(self.C, (int, float)) and self.C > 0)):
            raise ValueError(f"C={self.C!r}; use 'search' or a positive number, e.g. 1.0")
        if self.backend not in backends():
            raise ValueError(f"backend={self.backend!r}; use one of {', '.join(backends())}")
        if self.metric not in METRICS:
            raise ValueError(f"metric={self.metric!r}; use one of {', '.join(METRICS)}")
        if not (isinstance(self.tol, (int, float)) and self.tol > 0):
            raise ValueError(f"tol={self.tol!r}; use a positive number, e.g. 1e-4")
        if not (isinstance(self.max_iter, (int, np.integer)) and self.max_iter >= 1):
            raise ValueError(f"max_iter={self.max_iter!r}; use a positive integer, e.g. 1000")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction={self.val_fraction!r}; use a number in (0, 1)")

    def _solver(self, X: Any) -> Any:
        device = resolve_device(self.device)
        if isinstance(X, torch.Tensor) and self.backend == "torch":
            device = str(X.device)  # fitted where the features are
        return build_backend(self.backend, device=device, tol=float(self.tol),
                             max_iter=int(self.max_iter))  # fmt: skip

    def _host(self, X: Any) -> Any:
        """What the backend reads: scikit-learn and cuML take host arrays."""
        if isinstance(X, torch.Tensor) and self.backend != "torch":
            return X.detach().cpu().numpy()
        return X

    # -- fit ------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None) -> LinearProbe:
        """Every check first, then the search (or one fit), then the fitted attributes:
        a fit that fails leaves none of them half set."""
        self._check_params()
        X = self._host(_features(self, X, reset=True))
        classes, y_enc = np.unique(_labels(y, len(X), "y"), return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"y has one class ({classes[0]!r}); a classifier needs at least "
                             "two classes")  # fmt: skip
        if (X_val is None) != (y_val is None):
            raise ValueError("give both X_val and y_val, or neither (C='search' then carves val)")
        if X_val is not None and self.C != "search":
            raise ValueError(f"X_val is used only by C='search'; with C={self.C!r} fit X alone")
        train, val = self._split(X, y_enc, classes, X_val, y_val)
        solver = self._solver(X)
        if self.C == "search":
            both = (_cat(train[0], val[0]), np.concatenate([train[1], val[1]]))
            head = both[0].head(len(train[1])) if isinstance(both[0], Rows) else train[0]
            found = select_C(solver=solver, train=(head, train[1]), val=val,
                             num_classes=len(classes), metric=self.metric)  # fmt: skip
            final = refit(solver=solver, train=both, C=found.best_C, num_classes=len(classes),
                          init=found.fits.get(found.best_index))  # fmt: skip
            C, search = found.best_C, found.records
        else:
            final = refit(solver=solver, train=train, C=float(self.C), num_classes=len(classes))
            C, search = float(self.C), []
        solver.release()
        self.classes_, self.C_, self.search_ = classes, C, search
        self.converged_ = bool(final.converged and all(r["converged"] for r in search))
        self.n_iter_ = np.array([final.iterations])
        self._set_head(np.asarray(final.coef, np.float64), np.asarray(final.intercept))
        return self

    def _split(
        self, X: Any, y: np.ndarray, classes: np.ndarray, X_val: Any, y_val: Any
    ) -> tuple[tuple, tuple | None]:
        """(train, val) with encoded labels: all of X for a fixed C, the given val, or the
        protocol's seeded stratified carve."""
        if self.C != "search":
            return (X, y), None
        if X_val is None:
            keep, hold = stratified_holdout(y, fraction=self.val_fraction, seed=self.seed)
            return (_rows(X, keep), y[keep]), (_rows(X, hold), y[hold])
        Xv = self._host(_features(self, X_val, reset=False, name="X_val"))
        if Xv.shape[1] != X.shape[1]:
            raise ValueError(f"X_val has {Xv.shape[1]} features, X has {X.shape[1]}; give both "
                             "the same features")  # fmt: skip
        yv = _labels(y_val, len(Xv), "y_val")
        unseen = sorted(set(np.unique(yv).tolist()) - set(classes.tolist()))
        if unseen:
            raise ValueError(f"y_val has classes absent from y: {unseen[:5]}; every val class "
                             "must be in train (drop those rows or add them to train)")  # fmt: skip
        return (X, y), (Xv, np.searchsorted(classes, yv))

    def _set_head(self, coef: np.ndarray, intercept: np.ndarray) -> None:
        finite = np.where(np.isfinite(intercept), intercept, -np.inf)
        if len(self.classes_) == 2:  # scikit-learn's binomial form: class 1 against class 0
            self.coef_ = (coef[1] - coef[0])[None]
            self.intercept_ = np.array([finite[1] - finite[0]])
        else:
            self.coef_, self.intercept_ = coef, finite

    # -- predict --------------------------------------------------------------------------
    def decision_function(self, X: Any) -> np.ndarray:
        """X W^T + b, computed where X lives (a GPU tensor stays on its GPU)."""
        if not hasattr(self, "coef_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this LinearProbe is not fitted yet; call fit(X, y) first")
        X = _features(self, X, reset=False)
        if isinstance(X, torch.Tensor):
            W = torch.as_tensor(self.coef_, dtype=torch.float64, device=X.device)
            b = torch.as_tensor(self.intercept_, dtype=torch.float64, device=X.device)
            scores = (X.to(torch.float64) @ W.T + b).cpu().numpy()
        else:
            scores = np.asarray(X, np.float64) @ self.coef_.T + self.intercept_
        return scores[:, 0] if len(self.classes_) == 2 else scores

    def predict_proba(self, X: Any) -> np.ndarray:
        z = self.decision_function(X)
        if z.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-z))
            return np.stack([1.0 - p, p], axis=1)
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        z = self.decision_function(X)
        index = (z > 0).astype(int) if z.ndim == 1 else z.argmax(1)
        return self.classes_[index]

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """The probe's metric on (X, y), as a fraction: top-1 accuracy, or mean per-class
        accuracy (scikit-learn's balanced accuracy) with `metric='mean_per_class'`."""
        if sample_weight is not None:
            raise ValueError(
                "sample_weight is not supported; the protocol weighs every image alike"
            )
        y = _labels(y, len(X), "y")
        pred = self.predict(X)
        classes = np.unique(np.concatenate([self.classes_, y]))
        truth, guess = np.searchsorted(classes, y), np.searchsorted(classes, pred)
        return metric_score(guess, truth, self.metric) / 100.0

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.classifier_tags.multi_label = False
        return tags
