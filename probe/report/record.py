"""The result record: one JSON file per (encoder, dataset, evaluation) run."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from probe import __version__
from probe.core.io import write_json_atomic
from probe.core.paths import config_dir
from probe.core.tokens import is_token_kind

DEFAULT_FEATURE = "pooler_output"
DEFAULT_PROTOCOL = "clip"
NORMALIZE_TAGS = ("l2",)
POOL_TAG = re.compile(r"pool([1-9][0-9]*)")  # `@pool8`: encoder.token_pool=8 (the token cache)
LINEAR = "linear"
REQUIRED_FIELDS = (
    "encoder", "dataset", "eval", "metric", "n_train", "n_val", "n_test", "num_classes",
    "feature_dim", "dtype", "weights", "seconds", "features", "config", "versions", "git",
    "created",
)  # fmt: skip
REQUIRED_BY_EVAL = {
    LINEAR: ("score", "score_ci", "top5", "head", "C", "search", "backend"),
    "fewshot": ("by_k", "backend"),
    "knn": ("score", "score_ci", "k", "val_score_by_k", "test_score_by_k", "temperature"),
    # trained heads (probe.evaluations.attentive): the chosen lr and wd, every grid point's val
    # score, and the head with the test outputs beside the result, as the linear probe's
    "attentive": ("score", "score_ci", "top5", "head", "lr", "wd", "grid", "epochs", "seed"),
    "sgd_linear": ("score", "score_ci", "top5", "head", "lr", "wd", "grid", "epochs", "seed"),
}


def result_path(
    results_dir: str | Path, encoder: str, dataset: str, evaluation: str = LINEAR
) -> Path:
    """`{results_dir}/{encoder}/{dataset}.json` for the linear probe (the protocol's result),
    `{dataset}.{eval}.json` for the other evaluations, so a grid over evals never collides."""
    suffix = "" if evaluation == LINEAR else f".{evaluation}"
    return Path(results_dir).expanduser() / encoder / f"{dataset}{suffix}.json"


def result_name(encoder: Any, probe: Any, *, protocol: str | None = None) -> str:
    """The encoder name a run's result is filed under (its folder and its `encoder` field).

    The encoder config's name, tagged with a feature kind other than `pooler_output`, with
    probe-time normalisation other than `none` and with a protocol card other than `clip`:
    `dinov2_l14`, `dinov2_l14@last4`, `dinov2_l14@last4@l2`, `dinov2_l14@cls@dinov2`; a
    pooled token cache with its pool, `dinov2_l14@tokens@pool8`. Runs that differ only in
    those never share a result file.
    """
    name = str(encoder.get("name"))
    feature = encoder.get("feature")
    if feature and feature != DEFAULT_FEATURE:
        name += f"@{feature}"
    pool = encoder.get("token_pool")
    if pool is not None and is_token_kind(feature):
        name += f"@pool{pool}"
    normalize = (probe or {}).get("normalize") or "none"
    if normalize != "none":
        name += f"@{normalize}"
    return name if protocol in (None, DEFAULT_PROTOCOL) else f"{name}@{protocol}"


def name_overrides(name: str) -> list[str]:
    """A result name back as the overrides that produce it (`result_name`'s inverse)."""
    base, *tags = name.split("@")
    out = [f"encoder={base}"]
    cards = protocol_names()
    for tag in tags:
        if tag in NORMALIZE_TAGS:
            out.append(f"probe.normalize={tag}")
        elif POOL_TAG.fullmatch(tag):
            out.append(f"encoder.token_pool={POOL_TAG.fullmatch(tag).group(1)}")
        elif tag in cards:
            out.append(f"protocol={tag}")
        else:
            out.append(f"encoder.feature={tag}")
    return out


@lru_cache(maxsize=1)
def protocol_names() -> frozenset[str]:
    """The protocol cards shipped (`configs/protocol/*.yaml`): the tags a result name may end in."""
    return frozenset(p.stem for p in (config_dir() / "protocol").glob("*.yaml"))


def protocol_of(record: dict[str, Any]) -> str:
    """The protocol card a result was made under: its `protocol` field; a record without one
    was made before cards existed, by the one protocol there was (`clip`)."""
    value = record.get("protocol")
    return value if isinstance(value, str) and value else DEFAULT_PROTOCOL


def versions() -> dict[str, str | None]:
    """Library versions for the record, read from the installed distributions' metadata: a
    run that never imported transformers (pixels, say) need not pay ~2 s to import it here."""
    out: dict[str, str | None] = {"probe": __version__, "python": platform.python_version()}
    for mod, key in (
        ("torch", "torch"),
        ("transformers", "transformers"),
        ("sklearn", "scikit-learn"),
    ):
        loaded = sys.modules.get(mod)
        try:
            out[key] = loaded.__version__ if loaded else metadata.version(key)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The harness's commit when it runs from a git checkout (editable installs), else None."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = subprocess.run(
        ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, timeout=5,
    ).stdout.strip()  # fmt: skip
    return out.stdout.strip() + ("-dirty" if dirty else "")


def stamp(record: dict[str, Any]) -> dict[str, Any]:
    """The record with what every result says of its making: library versions, the
    harness commit and the time."""
    return {**record, "versions": versions(), "git": git_commit(), "created": now_iso()}


def write_result(path: Path, record: dict[str, Any]) -> Path:
    record = stamp(record)
    needed = (*REQUIRED_FIELDS, *REQUIRED_BY_EVAL.get(record.get("eval"), ()))
    missing = [k for k in needed if k not in record]
    if missing:  # a programming error, not a user one
        raise ValueError(f"result record lacks {missing}")
    write_json_atomic(path, record)
    return path


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
