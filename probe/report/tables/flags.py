"""Why a result is not a plain protocol run: the reasons behind a table cell's dagger.

A plain run converged, ran from a clean harness commit, and used the shipped config of its
probe backend and of its encoder as they stand: every key of `configs/probe/<backend>.yaml`
and `configs/encoder/<name>.yaml` (composed with Hydra, so interpolations resolve as in a
run) has its default value in the result's `config` block, and the features were computed
in the dtype the encoder config's default gives on the run's device. Keys that only decide
speed or where weights are read from are not compared (`PROBE_SPEED_KEYS`,
`ENCODER_SOURCE_KEYS`); any other key, present or future, is. The defaults are read from the
files now, never hard-coded: a changed default flags the results made before it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from omegaconf import OmegaConf

from probe.core.device import auto_dtype
from probe.core.paths import compose_config, config_dir

# Keys that change how fast a fit runs, not the optimum it must reach (convergence is
# checked on its own).
PROBE_SPEED_KEYS = frozenset(
    {"_target_", "name", "memory", "stack", "tf32", "chunk_mb", "lbfgs_memory",
     "linesearch_max_iter"}
)  # fmt: skip
# Keys that say where the weights come from (a local copy of the hub model is common on
# clusters; the result records `weights` and the model path) or how they are loaded; the
# dtype has its own rule below.
ENCODER_SOURCE_KEYS = frozenset(
    {"_target_", "name", "model", "revision", "model_type", "trust_remote_code", "compile",
     "dtype"}
)  # fmt: skip


@cache
def shipped_default(group: str, name: str) -> dict[str, Any] | None:
    """The composed, resolved `group` node of the config file `name`, or None if none."""
    if not (config_dir() / group / f"{name}.yaml").is_file():
        return None
    node = compose_config([f"{group}={name}"])[group]
    return OmegaConf.to_container(node, resolve=True)


def protocol_flags(record: dict[str, Any]) -> list[str]:
    """The reasons `record` is not a plain protocol run (empty: it is one)."""
    reasons = _convergence(record)
    git = record.get("git")
    if isinstance(git, str) and git.endswith("-dirty"):
        reasons.append(f"harness commit {git} (uncommitted changes)")
    config = record.get("config")
    if not isinstance(config, dict):
        return [*reasons, "no config block: cannot tell its settings"]
    probe, encoder = dict(config.get("probe") or {}), dict(config.get("encoder") or {})
    reasons += _differences("probe", probe.get("name") or record.get("backend"), probe,
                            skip=PROBE_SPEED_KEYS)  # fmt: skip
    reasons += _differences("encoder", encoder.get("name"), encoder, skip=ENCODER_SOURCE_KEYS)
    return reasons + _dtype(record, encoder.get("name"))


def _convergence(record: dict[str, Any]) -> list[str]:
    if record.get("converged") is True:
        return []
    where = [f"C={r.get('C'):.3g}" for r in record.get("search") or [] if not r.get("converged")]
    if not (record.get("final_fit") or {}).get("converged", False):
        where.append("the refit")
    return [f"not converged ({', '.join(where) or 'no convergence recorded'})"]


def _differences(group: str, name: Any, used: dict, *, skip: frozenset) -> list[str]:
    default = shipped_default(group, str(name)) if name else None
    if default is None:
        return [f"no configs/{group}/{name}.yaml to compare {group} settings with"]
    keys = [k for k in sorted({*default, *used}) if k not in skip]
    return [
        f"{group}.{k}={_show(used.get(k))} (configs/{group}/{name}.yaml: {_show(default.get(k))})"
        for k in keys
        if not _same(used.get(k), default.get(k))
    ]


def _dtype(record: dict[str, Any], encoder: Any) -> list[str]:
    default = (shipped_default("encoder", str(encoder)) or {}) if encoder else {}
    asked, device = str(default.get("dtype", "auto")), str(record.get("device", "cpu"))
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
