"""Why a result is not a plain protocol run: the reasons behind a table cell's dagger.

A plain run converged, ran from a clean harness commit and ran the shipped configs as they
stand: its recorded `config` block equals, leaf by leaf, what Hydra composes from the
top-level defaults (`configs/config.yaml`) and the files of its encoder, dataset, probe and
evaluation (`configs/<group>/<name>.yaml`), interpolations resolved as in a run; and its
features were computed in the dtype the encoder config's default gives on the run's device.
The result's name says which feature kind and normalisation it is (`dinov2_l14@last4`, as a
grid files them), so those keys are compared with the name's, not with the file's default.

Every key that can change a number is compared, present or future: only the keys of
`NO_NUMBER_KEYS` (paths, names, speed settings, where the weights are read from) are not,
each with the reason it cannot. A new key in a shipped config flags results until it is
either equal in them or listed there (tests/test_table_flags.py walks every shipped key).
The defaults are read from the files now, never hard-coded: a changed default flags the
results made before it. Works for every evaluation (linear, fewshot, knn).
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from probe.core.device import auto_dtype
from probe.core.paths import compose_config, config_dir
from probe.report.record import LINEAR, name_overrides, protocol_of

log = logging.getLogger(__name__)
GROUPS = ("encoder", "dataset", "probe", "eval", "protocol")
TOP_FILE = "configs/config.yaml"
# Dotted keys (each with everything under it) that cannot change a number in a result, and
# why. docs/tables.md lists them; anything not here is compared.
NO_NUMBER_KEYS: dict[str, str] = {
    "data_root": "a path; differs between machines",
    "cache_dir": "a path; the cache entry is chosen by a fingerprint of the feature settings",
    "results_dir": "a path",
    "stage": "which stages run; a probe on cached features gives what a full run gives",
    "device": "acts through the features' dtype, which has its own rule, and the solver's "
    "arithmetic, which the convergence check bounds",
    "batch_size": "images per extraction batch: speed (the feature cache ignores it)",
    "num_workers": "data-loading processes: speed",
    "memory_check": "whether a run predicted not to fit is refused before it starts",
    "compile": "torch.compile of the encoder: speed",
    "extract": "shard size, lock wait, cache re-verification, prefetch budget: speed and "
    "resumption",
    "hydra": "Hydra's own log and output folders (not part of a run's config block)",
    "encoder.name": "a name: the config file compared with is looked up by it",
    "dataset.name": "a name: the config file compared with is looked up by it",
    "probe.name": "a name: the config file compared with is looked up by it",
    "eval.name": "a name: the config file compared with is looked up by it",
    "protocol.name": "a name: the config file compared with is looked up by it",
    "protocol.sources": "the card's citations of its paper's code",
    "protocol.evals": "the evaluations the card defines; another one is refused",
    "encoder.model": "where the weights are read from (a local copy of a hub model); the "
    "result records its `weights`",
    "encoder.revision": "the hub revision; the result records the commit it loaded",
    "encoder.checkpoint": "a local weights file (timm) in place of the hub's",
    "encoder.model_type": "checked on load: a mismatch fails the run",
    "encoder.width": "checked on load: a mismatch fails the run",
    "encoder.trust_remote_code": "whether hub code may run to load the model",
    "encoder.compile": "torch.compile of the encoder: speed",
    "encoder.dtype": "the dtype the features were really computed in has its own rule",
    "encoder.features": "kinds extracted alongside in the same pass; each kind's features "
    "are the same (the feature cache ignores it)",
    "dataset.root": "a path; differs between machines",
    "dataset.path": "a path (or hub id) of a generic reader's data, named by `dataset.name`",
    "dataset.images_dir": "a path under `dataset.root`",
    "dataset.folders": "folder names under `dataset.root`",
    "dataset.download": "whether torchvision may fetch missing files",
    "dataset.expected_sizes": "only compared with the split sizes found, with a warning",
    "dataset.hint": "the message shown when the data is missing",
    "probe.memory": "L-BFGS correction pairs: speed to the same optimum (convergence is "
    "checked on its own)",
    "probe.lbfgs_memory": "as probe.memory (cuML)",
    "probe.linesearch_max_iter": "line-search steps: speed to the same optimum",
    "probe.stack": "fitting a search round's C values together: speed",
    "probe.tf32": "TF32 for a warm-up phase only, never for the finish: speed",
    "probe.chunk_mb": "rows per pass chunk: memory and speed",
    "eval.query_chunk": "k-NN queries per block of the same search: memory and speed",
    "eval.bank_chunk": "k-NN bank rows per block of the same search: memory and speed",
}


def no_number(key: str) -> bool:
    """Whether the dotted `key` cannot change a number (it or a parent is listed)."""
    parts = key.split(".")
    return any(".".join(parts[:i]) in NO_NUMBER_KEYS for i in range(1, len(parts) + 1))


@cache
def shipped_config(overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """The shipped config composed with `overrides`, resolved as a run resolves it."""
    return OmegaConf.to_container(compose_config(list(overrides)), resolve=True)


def protocol_flags(record: dict[str, Any]) -> list[str]:
    """The reasons `record` is not a plain protocol run (empty: it is one)."""
    reasons = _convergence(record)
    git = record.get("git")
    if isinstance(git, str) and git.endswith("-dirty"):
        reasons.append(f"harness commit {git} (uncommitted changes)")
    config = record.get("config")
    if not isinstance(config, dict):
        return [*reasons, "no config block: cannot tell its settings"]
    if config.get("api") is True:  # probe.linear_probe & co.: the caller's own features
        return [
            *reasons,
            "the caller's features through the Python API (no shipped encoder "
            "or dataset config to compare with)",
        ]
    names = _names(record, config)
    missing = {g: n for g, n in names.items() if not _has_file(g, n)}
    reasons += [_no_file(g, n) for g, n in missing.items()]
    present = {g: n for g, n in names.items() if g not in missing}
    # a group the name tags (`@dinov2`: protocol=dinov2) is already among the groups' files
    tags = [t for t in _tags(record) if t.partition("=")[0] not in GROUPS
            and t.split(".")[0] in present]  # fmt: skip
    overrides = (*(f"{g}={n}" for g, n in present.items()), *tags)
    try:
        shipped = shipped_config(overrides)
    except (HydraException, OmegaConfBaseException) as err:  # a name Hydra cannot compose
        first = str(err).strip().splitlines()[0]
        return [*reasons, f"cannot compose the shipped config for {' '.join(overrides)}: {first}"]
    sources = {g: f"configs/{g}/{n}.yaml" for g, n in present.items()}
    sources.update({t.partition("=")[0]: f"result name {record.get('encoder')}" for t in tags})
    absent = {g for g in GROUPS if g not in config}  # results made before cards: no protocol
    reasons += _differences(config, shipped, sources=sources, skip=set(missing) | absent)
    encoder = shipped.get("encoder") if "encoder" in present else {}
    return reasons + _dtype(record, encoder)


def _has_file(group: str, name: Any) -> bool:
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        return False
    return (config_dir() / group / f"{name}.yaml").is_file()


def _no_file(group: str, name: Any) -> str:
    if not name:
        return f"no {group} name recorded: cannot compare {group} settings"
    return f"no configs/{group}/{name}.yaml to compare {group} settings with"


def _names(record: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The config file of each group the run used: its recorded name, else the record's."""
    encoder = record.get("encoder")
    fallback = {
        "encoder": encoder.split("@")[0] if isinstance(encoder, str) else None,
        "dataset": record.get("dataset"),
        "probe": record.get("backend"),
        "eval": record.get("eval", LINEAR),
        "protocol": protocol_of(record),
    }
    nodes = {g: config.get(g) if isinstance(config.get(g), dict) else {} for g in GROUPS}
    return {g: nodes[g].get("name") or fallback[g] for g in GROUPS}


def _tags(record: dict[str, Any]) -> list[str]:
    """The overrides the result's name carries (`@last4`: encoder.feature=last4)."""
    name = record.get("encoder")
    return name_overrides(name)[1:] if isinstance(name, str) else []


# nothing fitted to a convergence rule: k-NN's neighbours vote; a trained head
# (eval=attentive, sgd_linear) runs its fixed schedule of epochs
NO_CERTIFICATE = ("knn", "attentive", "sgd_linear")


def _convergence(record: dict[str, Any]) -> list[str]:
    evaluation = record.get("eval", LINEAR)
    if evaluation in NO_CERTIFICATE:
        return []
    if evaluation == "fewshot":
        by_k = record.get("by_k") if isinstance(record.get("by_k"), dict) else {}
        runs = [(k, i, ok) for k, row in by_k.items()
                for i, ok in enumerate((row or {}).get("converged") or [])]  # fmt: skip
        where = [f"k={k} draw {i}" for k, i, ok in runs if ok is not True]
        if runs and not where:
            return []
        return [f"not converged ({', '.join(where) or 'no convergence recorded'})"]
    if record.get("converged") is True:
        return []
    where = [f"C={r.get('C'):.3g}" for r in record.get("search") or [] if not r.get("converged")]
    if not (record.get("final_fit") or {}).get("converged", False):
        where.append("the refit")
    return [f"not converged ({', '.join(where) or 'no convergence recorded'})"]


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value of every leaf (an empty mapping is a leaf)."""
    if not isinstance(node, dict) or not node:
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _differences(
    used: dict[str, Any], shipped: dict[str, Any], *, sources: dict[str, str], skip: set[str]
) -> list[str]:
    """`key=used (file: shipped)` for every leaf that differs and can change a number."""
    mine, theirs = _leaves(used), _leaves(shipped)
    out = []
    for key in sorted(mine.keys() | theirs.keys()):
        group = key.split(".")[0]
        if group in skip or no_number(key) or _same(mine.get(key), theirs.get(key)):
            continue
        where = sources.get(key) or (sources.get(group) if group in GROUPS else None) or TOP_FILE
        out.append(f"{key}={_show(mine.get(key))} ({where}: {_show(theirs.get(key))})")
    return out


def _dtype(record: dict[str, Any], encoder: dict[str, Any] | None) -> list[str]:
    asked, device = str((encoder or {}).get("dtype", "auto")), str(record.get("device", "cpu"))
    means = auto_dtype(device) if asked == "auto" else asked
    got = record.get("dtype")
    if got == means:
        return []
    return [f"features computed in {got} (encoder config dtype {asked}: {means} on {device})"]


def _same(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        return not isinstance(b, bool) and float(a) == float(b)
    return a == b


def _show(value: Any) -> str:
    return "null" if value is None else str(value)
