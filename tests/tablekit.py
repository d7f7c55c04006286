"""Paper tables rendered from hand-written results, as text with the temp dir named `RESULTS`.

`linear` is the record a plain linear run leaves (its `config` block composed from the shipped
configs, so it carries no dagger unless a test changes it); `write_linear` files it with a head
whose test predictions are given, so paired differences have real predictions to resample;
`render` builds a table and returns its md, csv and tex with the temp path replaced, for
comparisons with files kept under `tests/fixtures/tables/`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from conftest import CONFIGS, compose_cfg
from hydra import compose, initialize_config_dir
from resultkit import write_result

from probe.report.tables.latex import tex_escape
from probe.report.tables.write import make_table

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "tables"


@functools.cache
def _config(overrides: tuple[str, ...]) -> str:
    from omegaconf import OmegaConf

    return json.dumps(OmegaConf.to_container(compose_cfg(list(overrides)), resolve=True))


def linear(encoder: str, dataset: str, score: float, *, overrides: tuple[str, ...] = (),
           **fields: Any) -> dict[str, Any]:  # fmt: skip
    """A linear result as a plain run on the CPU leaves it; `overrides` compose its config
    block (`encoder=` and `probe=torch` come first)."""
    config = _config((f"encoder={encoder.split('@')[0]}", "probe=torch", *overrides))
    return {
        "encoder": encoder, "dataset": dataset, "metric": "top1", "score": score, "C": 1.0,
        "converged": True, "search": [{"C": 1.0, "converged": True}],
        "final_fit": {"converged": True}, "git": "0123abc", "backend": "torch",
        "device": "cpu", "dtype": "float32", "config": json.loads(config), **fields,
    }  # fmt: skip


def write_linear(root: Path, record: dict[str, Any], *, correct: list[bool] | None = None) -> Path:
    """`record` as a done result under `root`, with a head whose test predictions are right
    where `correct` says (40 test images of 2 classes by default, all right)."""
    path = root / record["encoder"] / f"{record['dataset']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    ok = np.array(correct if correct is not None else [True] * 40)
    labels = np.arange(len(ok), dtype=np.int64) % 2
    preds = np.where(ok, labels, 1 - labels)
    head = path.with_suffix(".npz")
    np.savez(head, coef=np.zeros((2, 3)), intercept=np.zeros(2), C=np.float64(1.0),
             test_label=labels, test_pred=preds)  # fmt: skip
    sha = hashlib.sha256(head.read_bytes()).hexdigest()
    return write_result(path, {**record, "head": {"path": str(head), "sha256": sha}})


def table_cfg(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="probe_table", overrides=[f"table={name}", *overrides])


def render(name: str, root: Path, *overrides: str) -> dict[str, str]:
    """Table `name` over `root`: {"md", "csv", "tex"} with `root` written as RESULTS."""
    _, paths, _ = make_table(table_cfg(name, [f"results_dir={root}", *overrides]))
    out = {}
    for kind in ("md", "csv", "tex"):
        text = paths[kind].read_text()
        out[kind] = text.replace(tex_escape(str(root)), "RESULTS").replace(str(root), "RESULTS")
    return out


def mlcd_results(root: Path) -> Path:
    """Results for the MLCD tables that reach every part of their text: intervals, bold ties,
    paired differences (and one that cannot be paired), daggers, a refused metric, a damaged
    file and missing cells."""
    ci, same = [80.0, 99.0], {"test_content_hash": "h1"}
    mistakes = [True] * 30 + [False] * 10
    write_linear(root, linear("mlcd_l14", "food101", 96.456, score_ci=[95.9, 96.9], **same))
    write_linear(root, linear("clip_l14", "food101", 95.0, score_ci=[94.1, 95.8], **same),
                 correct=mistakes)  # fmt: skip
    write_linear(root, linear("mlcd_l14", "cifar10", 98.0, score_ci=ci))
    write_linear(root, linear("clip_l14", "cifar10", 98.0, score_ci=ci))  # a tie
    write_linear(root, linear("mlcd_l14", "cifar100", 90.0, score_ci=ci, converged=False,
                              search=[{"C": 0.01, "converged": False}]))  # fmt: skip
    write_linear(root, linear("clip_l14", "cifar100", 88.0, score_ci=ci))
    write_linear(root, linear("mlcd_l14", "sun397", 85.0, score_ci=ci, git="0123abc-dirty"))
    write_linear(root, linear("mlcd_l14", "pets", 90.0, score_ci=ci))  # top1: refused
    write_linear(root, linear("clip_l14", "pets", 91.0, metric="mean_per_class", score_ci=ci))
    (root / "clip_l14" / "dtd.json").write_text('{"encoder": "clip_l14", "dataset": "dt')
    write_linear(root, linear("mlcd_l14", "imagenet", 86.2, score_ci=[85.9, 86.5]))
    write_linear(root, linear("clip_l14", "imagenet", 85.0, score_ci=[84.7, 85.3]))
    write_linear(root, linear("mlcd_b32", "imagenet", 79.0, score_ci=[78.6, 79.4]))
    return root
