"""Every count, switch and choice a `python -m probe` line can set, checked in one place.

Hydra types a command-line value by its look: `batch_size=abc` arrives as a string,
`eval.shots=[1.5]` as a list of floats, `eval.k=10` as a scalar where a list is meant. Read
deep in a stage, such values failed as tracebacks (`int('abc')`, `'int' object is not
iterable`) or, worse, were truncated without a word (`int(1.5)` shot 1, `eval.k=[2.5]`
k=2, `extract.shard_size=1.5` shards of one row). As scikit-learn declares its estimators'
`_parameter_constraints`, `RULES` declares each key's rule once, and `check` applies them to
a composed config at the top of the run, before anything is built: a wrong value stops the
run in one line naming the key, the value and what it takes. Keys a config does not have
(`eval.k` outside `eval=knn`) are skipped; the stage functions keep their own checks for
callers that do not come through a config.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from probe.core.errors import ProbeError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Count:
    """A whole number >= `low` (1: a positive count); optionally `auto` or null."""

    example: Any = None
    low: int = 1
    auto: bool = False
    null: bool = False

    def __call__(self, key: str, value: Any) -> None:
        if (self.auto and value == "auto") or (self.null and value is None):
            return
        if _is_int(value) and value >= self.low:
            return
        what = "a positive integer" if self.low == 1 else f">= {self.low}"
        also = (" or 'auto'" if self.auto else "") + (" or null" if self.null else "")
        eg = f", e.g. {self.example}" if self.example is not None else ""
        tail = " (a whole number)" if self.low != 1 else ""
        raise ProbeError(f"{key}={value!r} must be {what}{also}{tail}{eg}")


@dataclass(frozen=True)
class Counts:
    """A non-empty list of positive whole numbers, e.g. `eval.k=[10,20]`."""

    example: str

    def __call__(self, key: str, value: Any) -> None:
        if isinstance(value, (list, tuple)) and value and all(_is_int(v) and v >= 1 for v in value):
            return
        raise ProbeError(f"{key}={_shown(value)} must be a list of positive integers, e.g. "
                         f"{key}={self.example}")  # fmt: skip


@dataclass(frozen=True)
class Grid:
    """A non-empty list of finite numbers above `low` (at or above it with `closed`), or a
    `_target_` node that builds one (`numpy.logspace`), checked once built."""

    low: float
    closed: bool = False
    example: str = "[0.001,0.002]"

    def __call__(self, key: str, value: Any) -> None:
        if isinstance(value, dict) and "_target_" in value:
            return
        ok = isinstance(value, (list, tuple)) and value and all(
            _is_real(v) and v == v and abs(v) != float("inf")
            and (v >= self.low if self.closed else v > self.low) for v in value
        )  # fmt: skip
        if not ok:
            bound = f"{'>=' if self.closed else '>'} {self.low:g}"
            raise ProbeError(f"{key}={_shown(value)} must be a non-empty list of numbers "
                             f"{bound}, e.g. {key}={self.example}")  # fmt: skip


@dataclass(frozen=True)
class Integer:
    """Any whole number (a seed)."""

    def __call__(self, key: str, value: Any) -> None:
        if not _is_int(value):
            raise ProbeError(f"{key}={value!r} must be an integer, e.g. {key}=0")


@dataclass(frozen=True)
class Real:
    """A finite number in an interval: `low < x` (`low <= x` with `closed`), `x < high`."""

    low: float
    high: float = float("inf")
    closed: bool = False
    null: bool = False
    example: Any = None

    def __call__(self, key: str, value: Any) -> None:
        if self.null and value is None:
            return
        above = _is_real(value) and (value >= self.low if self.closed else value > self.low)
        if above and value < self.high and value == value:
            return
        if self.high != float("inf"):
            rule = f"in ({self.low:g}, {self.high:g})"
        else:
            rule = f"a finite number {'>=' if self.closed else '>'} {self.low:g}"
        eg = f", e.g. {self.example}" if self.example is not None else ""
        raise ProbeError(f"{key}={value!r} must be {rule}{' or null' if self.null else ''}{eg}")


@dataclass(frozen=True)
class Choice:
    options: tuple[Any, ...]

    def __call__(self, key: str, value: Any) -> None:
        if not any(type(o) is type(value) and o == value for o in self.options):  # 1 is no True
            shown = ", ".join(str(o).lower() if isinstance(o, bool) else str(o)
                              for o in self.options)  # fmt: skip
            raise ProbeError(f"{key}={value!r} is not valid; allowed: {shown}")


def _device(key: str, value: Any) -> None:
    if not (isinstance(value, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", value)):
        raise ProbeError(f"{key}={value!r} is not valid; allowed: auto, cpu, cuda, cuda:N")


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(repr(v) if isinstance(v, str) else str(v) for v in value) + "]"
    return repr(value)


FLAG = Choice((True, False))
AUTO_FLAG = Choice(("auto", True, False))
RULES: dict[str, Callable[[str, Any], None]] = {
    "stage": Choice(("all", "extract", "probe")),
    "device": _device,
    "batch_size": Count(256),
    "num_workers": Count(low=0, auto=True),
    "seed": Integer(),
    "memory_check": FLAG,
    "compile": FLAG,
    "extract.shard_size": Count(8192),
    "extract.lock_timeout": Real(0, closed=True, null=True, example=3600),
    "extract.verify": FLAG,
    "extract.prefetch_mb": Real(0, example=2048),
    "bootstrap.resamples": Count(1000),
    "bootstrap.level": Real(0, 1, example=0.95),
    "bootstrap.seed": Integer(),
    "eval.name": Choice(("linear", "knn", "fewshot", "attentive", "sgd_linear")),
    "eval.input": Choice(("pooled", "tokens")),
    "eval.lrs": Grid(0, example="[0.0005,0.001]"),
    "eval.wds": Grid(0, closed=True, example="[0.001,0.004]"),
    "eval.epochs": Count(20),
    "eval.batch_size": Count(1024),
    "eval.warmup_epochs": Real(0, closed=True, example=5),
    "eval.start_lr": Real(0, null=True, example=0.0002),
    "eval.final_lr": Real(0, closed=True, example=0.0),
    "eval.first_step": Choice((0, 1)),
    "eval.seed": Integer(),
    "eval.pooler": Choice(("vjepa2", "aim")),
    "eval.queries": Count(1),
    "eval.heads": Count(null=True),
    "eval.mlp_ratio": Real(0, example=4.0),
    "eval.prefix": Choice(("drop", "keep")),
    "eval.wd_without_val": Real(0, closed=True, null=True, example=0.0),
    "eval.buffer_mb": Real(0, example=2048),
    "eval.k": Counts("[10,20,100,200]"),
    "eval.temperature": Real(0, example=0.07),
    "eval.query_chunk": Count(4096),
    "eval.bank_chunk": Count(65536),
    "eval.shots": Counts("[1,2,4,8,16]"),
    "eval.seeds": Count(5),
    "probe.max_iter": Count(1000),
    "probe.tol": Real(0, example=1e-4),
    "probe.memory": Count(10),
    "probe.chunk_mb": Count(1024),
    "probe.stack": AUTO_FLAG,
    "probe.tf32": AUTO_FLAG,
    "probe.normalize": Choice(("none", "l2")),
    "probe.linesearch_max_iter": Count(50),
    "probe.lbfgs_memory": Count(10),
    "probe.dtype": Choice(("float32", "float64")),
    "dataset.metric": Choice(("top1", "mean_per_class", "map11", "roc_auc", "top1_top5_mean")),
    "dataset.num_classes": Count(auto=True),
    "dataset.val.source": Choice(("auto", "official", "carve")),
    "dataset.val.fraction": Real(0, 1, null=True, example=0.2),
    "dataset.val.count": Count(null=True),
    "dataset.val.seed": Integer(),
    "dataset.skip_corrupt": FLAG,
    "dataset.download": FLAG,
    "encoder.dtype": Choice(("auto", "float32", "bfloat16", "float16")),
    "encoder.resolution": Count(null=True),
    "encoder.width": Count(null=True),
    "encoder.token_pool": Count(example=8, null=True),
    "encoder.patch_size": Count(null=True),
    "encoder.prefix_tokens": Count(low=0, null=True),
    "encoder.size": Count(null=True),
}


def check(cfg: DictConfig) -> None:
    """Every key of `RULES` the config has, checked; the first wrong one raises ProbeError."""
    for key, rule in RULES.items():
        found = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
        if found is _MISSING:
            continue
        if isinstance(found, (ListConfig, DictConfig)):
            found = OmegaConf.to_container(found, resolve=True)
        rule(key, found)


_MISSING = object()
