"""The shape a cache entry's `meta.json` must have before anything reads a field of it.

meta.json is ours, but it lives on a shared disk and can be edited, truncated to other valid
JSON, or left by another version. Valid JSON of the wrong shape (a list, `"n": "abc"`, a
`dataset` block that is a string) used to reach attribute and key lookups deep in the probe
stage as tracebacks; `problem` names what is wrong instead, and the entry is then treated
like one with an unreadable meta.json: rebuilt by `stage=all`/`extract`, reported by
`stage=probe` with the command that rebuilds it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

Check = tuple[str, type | tuple[type, ...], bool]  # (key, type, required)
# top level: what `CacheEntry` and the probe stage read
TOP: tuple[Check, ...] = (("n", int, True), ("dim", int, True), ("checksum", dict, False),
                          ("content_hash", str, False), ("fingerprint", dict, False),
                          ("dataset", dict, False), ("libraries", dict, False),
                          ("labels", dict, False), ("features", dict, False),
                          ("tokens", dict, False))  # fmt: skip
# the `dataset` block (`ImageDataset.about`): what `stage=probe` reads instead of the images
DATASET: tuple[Check, ...] = (("num_classes", int, True), ("splits", list, False),
                              ("val_rule", str, False), ("info", dict, False),
                              ("stamp", (dict, type(None)), False))  # fmt: skip
STAMP: tuple[Check, ...] = (("path", str, True), ("size", int, True), ("mtime_ns", int, True))
# the `labels` block, only for labels that are not one int64 per row (`cache.label_layout`)
LABELS: tuple[Check, ...] = (("shape", list, True), ("dtype", str, True))
LABEL_DTYPES = ("int8", "int16", "int32", "int64")
# the `features` block, only for features that are not N x dim float32 (the token cache's
# N x T x D float16, `probe/features/layout.py`); `tokens` says how its T tokens are made
FEATURES: tuple[Check, ...] = (("shape", list, True), ("dtype", str, True))
FEATURE_DTYPES = ("float16", "float32")
TOKENS: tuple[Check, ...] = (("prefix", int, True), ("grid", list, True),
                             ("patch_grid", list, False),
                             ("pool", (int, type(None)), False))  # fmt: skip
CHECKSUM: tuple[Check, ...] = (("algorithm", str, False), ("shard_size", int, False),
                               ("shards", list, False), ("labels", str, False))  # fmt: skip


def problem(meta: Any) -> str | None:
    """Why `meta` (parsed meta.json) cannot be used, or None when its shape is right."""
    if not isinstance(meta, dict):
        return f"holds a {type(meta).__name__}, not an object"
    why = _fields(meta, TOP, "")
    if why:
        return why
    if meta["n"] < 0 or meta["dim"] < 1:
        return f"says n={meta['n']}, dim={meta['dim']} (rows >= 0, feature columns >= 1)"
    why = _fields(meta.get("checksum", {}), CHECKSUM, "checksum.")
    if why:
        return why
    why = _labels(meta) or _features(meta)
    if why:
        return why
    about = meta.get("dataset")
    if about is None:
        return None
    why = _fields(about, DATASET, "dataset.")
    if why:
        return why
    if about["num_classes"] < 1 or not all(s in ("train", "val", "test")
                                           for s in about.get("splits", [])):  # fmt: skip
        return f"has dataset.num_classes={about['num_classes']}, splits={about.get('splits')}"
    if about.get("stamp") is not None:
        return _fields(about["stamp"], STAMP, "dataset.stamp.")
    return None


def _labels(meta: dict[str, Any]) -> str | None:
    """The `labels` block: (n, K...) of whole numbers >= 1, an integer dtype."""
    block = meta.get("labels")
    if block is None:
        return None
    why = _fields(block, LABELS, "labels.")
    if why:
        return why
    shape, dtype = block["shape"], block["dtype"]
    dims_ok = all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape[1:])
    if not shape or shape[0] != meta["n"] or not dims_ok or dtype not in LABEL_DTYPES:
        return f"has labels={block!r} (shape [n={meta['n']}, K, ...], an integer dtype)"
    return None


def _features(meta: dict[str, Any]) -> str | None:
    """The `features` block: [n, ..., dim] of whole numbers >= 1, a float dtype; the `tokens`
    block: its prefix and grid make the rows' T tokens."""
    block = meta.get("features")
    if block is not None:
        why = _fields(block, FEATURES, "features.")
        if why:
            return why
        shape = block["shape"]
        dims_ok = all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape[1:])
        if (len(shape) < 2 or shape[0] != meta["n"] or shape[-1] != meta["dim"] or not dims_ok
                or block["dtype"] not in FEATURE_DTYPES):  # fmt: skip
            return (f"has features={block!r} (shape [n={meta['n']}, ..., dim={meta['dim']}], "
                    "float16)")  # fmt: skip
    tokens = meta.get("tokens")
    if tokens is None:
        return None
    why = _fields(tokens, TOKENS, "tokens.")
    if why:
        return why
    rows = feature_shape(meta)[0]
    side = tokens["grid"]
    whole = all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in side)
    made = tokens["prefix"] + math.prod(side) if whole else -1
    if len(rows) != 3 or len(side) != 2 or made != rows[1]:
        return f"has tokens={tokens!r}, which do not make the {rows[1:]} rows of features"
    return None


def feature_shape(meta: dict[str, Any]) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype features.npy must have: the `features` block's, else (n, dim)
    float32 (meta.json, or the key of an extraction being written, `probe/features/shards.py`)."""
    block = meta.get("features")
    if block is None:
        return (int(meta["n"]), int(meta["dim"])), np.dtype(np.float32)
    return tuple(int(d) for d in block["shape"]), np.dtype(block["dtype"])


def _fields(block: dict[str, Any], checks: tuple[Check, ...], prefix: str) -> str | None:
    for key, kind, required in checks:
        if key not in block:
            if required:
                return f"lacks {prefix}{key}"
            continue
        value = block[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"has {prefix}{key}={value!r}, not {_name(kind)}"
    return None


def _name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", str: "a string", dict: "an object", list: "a list",
             type(None): "null"}  # fmt: skip
    return " or ".join(names[k] for k in kinds)
