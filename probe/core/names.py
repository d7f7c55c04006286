"""Names that become folder or file names: checked where they enter, before anything is written.

`encoder.name` and `dataset.name` name the cache's folders (`{cache_dir}/{encoder}/{dataset}/`),
the result (`{results_dir}/{encoder}/{dataset}.json`) and Hydra's log folder
(`{results_dir}/logs/.../{time}_{encoder}_{dataset}`); `encoder.feature` tags the result's
folder (`{encoder}@{feature}`), and a table's or a grid's name its files. A name holding a path
separator, `..`, an absolute path or nothing at all would put files outside the folders the
user gave (or in their top), so it is refused in one line that names the key, the value and
the fix. A leading dot is refused too (every scan skips hidden entries, so the results would
be invisible), as is a control character (a task file is one run a line), and an encoder name
that is one of the results dir's own folders (`logs`, `tables`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from probe.core.errors import ProbeError

# top-level folders of a results dir that hold no results (the tables skip them)
RESERVED = frozenset({"logs", "tables", "published", "tasks", "multirun", "outputs"})
MAX_BYTES = 100  # two names and a timestamp fit one 255-byte file name (Hydra's log folder)


def _fix(key: str) -> str:
    return f"set {key} to a plain name (letters, digits, . _ - + but no leading dot), e.g. my_name"


def name_problem(value: Any) -> str | None:
    """Why `value` cannot be one folder or file name, or None when it can."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # `dataset.name=2024` reaches us as an int
    if not isinstance(value, str):
        return "is empty" if value is None else "is not a string"
    if not value.strip():
        return "is empty"
    if "/" in value or "\\" in value:
        return "holds a path separator"
    if value.startswith("."):
        return "starts with a dot (`.` and `..` leave the folder; a hidden name is never read back)"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "holds a control character"
    if value != value.strip():
        return "starts or ends with a space"
    if len(value.encode("utf-8")) > MAX_BYTES:
        return f"is longer than {MAX_BYTES} bytes"
    return None


def check_name(value: Any, *, key: str, reserved: frozenset[str] = frozenset()) -> str:
    """`value` (as text) if it is safe as one path component; else a one-line ProbeError
    naming `key`, the value and why."""
    why = name_problem(value)
    if why is None and str(value) in reserved:
        why = f"is reserved (the results dir's {value}/ folder is not a results folder)"
    if why is not None:
        raise ProbeError(f"{key}={value!r} {why}: it becomes a folder or file name; {_fix(key)}")
    return str(value)


def check_run_names(cfg: Mapping[str, Any]) -> None:
    """The names of one run that become path components: encoder, dataset, feature kind."""
    encoder, dataset = cfg.get("encoder") or {}, cfg.get("dataset") or {}
    check_name(encoder.get("name"), key="encoder.name", reserved=RESERVED)
    check_name(dataset.get("name"), key="dataset.name")
    if "@" in str(encoder.get("name")):
        raise ProbeError(
            f"encoder.name={encoder.get('name')!r} holds `@`, which separates a result's tags "
            f"(encoder@feature@normalize); {_fix('encoder.name')}"
        )
    if encoder.get("feature") is not None:
        check_name(encoder.get("feature"), key="encoder.feature")
