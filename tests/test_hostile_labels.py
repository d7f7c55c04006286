"""Labels no probe can learn from: refused in one line where the features enter the probe
stage, for every evaluation and backend, instead of a ZeroDivisionError or a silent score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import compose_cfg, main_refuses
from test_npz import features, overrides, write

from probe.core.errors import ProbeError
from probe.run import run
from probe.solvers.torch_solver import TorchSolver

EVALS = [["eval=linear"], ["eval=linear", "probe=sklearn"], ["eval=knn"],
         ["eval=fewshot", "eval.shots=[1]", "eval.seeds=1"]]  # fmt: skip
FAST = ["probe.tol=1e-2"]


def _refused(dirs: list[str], path: Path, extra: list[str], message: str) -> None:
    with pytest.raises(ProbeError, match=message) as err:
        run(compose_cfg(overrides(dirs, path, *extra, *FAST)))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("extra", EVALS)
def test_one_class_in_train(dirs, tmp_path: Path, extra: list[str]) -> None:
    path = write(tmp_path / "one.npz", y_train=np.full(300, 2, np.int64))
    _refused(dirs, path, extra, r"the train split holds one class \(2\): a probe needs two")


@pytest.mark.parametrize("extra", EVALS)
def test_one_class_in_val(dirs, tmp_path: Path, extra: list[str]) -> None:
    x_val, _ = features(60, seed=2)
    path = write(tmp_path / "v.npz", x_val=x_val, y_val=np.zeros(60, np.int64))
    _refused(dirs, path, extra, r"the val split holds one class \(0\): C \(k for eval=knn\)")


@pytest.mark.parametrize(("split", "n"), [("test", 90), ("val", 60)])
@pytest.mark.parametrize("extra", EVALS[::2])
def test_labels_never_seen_in_train(dirs, tmp_path: Path, split: str, n: int, extra) -> None:
    x, y = features(n, seed=2)
    y[:4] = [5, 5, 7, 9]
    arrays = {f"x_{split}": x, f"y_{split}": y}
    if split == "val":
        arrays.update(x_test=features(90, seed=1)[0], y_test=features(90, seed=1)[1])
    path = write(tmp_path / "u.npz", **arrays)
    _refused(dirs, path, extra, rf"{split} labels 5, 7, 9 never occur in train \(3 classes\)")


def test_a_class_missing_from_test_or_val_is_fine(dirs, tmp_path: Path) -> None:
    """Only the other way round is refused: a test set without one of train's classes is
    common (a rare class) and every number stays meaningful."""
    x, y = features(90, seed=1)
    keep = y != 1
    record = run(compose_cfg(overrides(dirs, write(tmp_path / "m.npz", x_test=x[keep],
                                                   y_test=y[keep]), *FAST)))  # fmt: skip
    assert record["n_test"] == int(keep.sum())


def test_torch_solver_refuses_one_class_itself() -> None:
    """Called directly (a bench, a test), not through the probe stage: no ZeroDivisionError."""
    X, _ = features(50)
    with pytest.raises(ProbeError, match=r"hold 1 class\(es\) \(\[3\]\); a logistic probe needs"):
        TorchSolver().fit(X, np.full(50, 3), C=1.0, num_classes=4)


def test_cli_one_class_is_one_line_exit_2(dirs, tmp_path: Path, caplog) -> None:
    """Through `python -m probe`'s main (in-process): one line, exit 2."""
    path = write(tmp_path / "one.npz", y_train=np.zeros(300, np.int64))
    line = main_refuses(overrides(dirs, path, "eval=fewshot", "eval.shots=[1]", "eval.seeds=1"),
                        caplog)  # fmt: skip
    assert "the train split holds one class" in line
