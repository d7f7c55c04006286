"""`eval=attentive` (a pooling head on cached tokens) and `eval=sgd_linear` (a linear head on
pooled features): a grid of (lr, weight decay) heads trained together with AdamW, the best on
val, the final head scored on test (`probe.evaluations.gridprobe`).

`eval=attentive` takes token features, N x T x D (the token cache: `encoder.feature=tokens`);
`eval=sgd_linear` takes pooled ones, N x D. Each refuses the other shape in one line before
any training. The defaults of `configs/eval/attentive.yaml` are V-JEPA 2's ImageNet probe
(facebookresearch/vjepa2 @ c2963a4, `configs/eval/vitl/in1k.yaml`), cited line by line there;
`configs/protocol/clip_benchmark.yaml` sets `eval=sgd_linear` to CLIP_benchmark's linear probe.

Prefix tokens (class, registers: `Task.prefix_tokens` of them lead each row) are left out by
default (`eval.prefix=drop`: the pooler attends over the patch tokens, as V-JEPA 2 and AIM,
whose encoders have none, do); `eval.prefix=keep` attends over every cached token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from probe.core.errors import ProbeError
from probe.evaluations.gridprobe import Settings, check_grid, grid_probe
from probe.evaluations.outcome import Outcome, Task
from probe.evaluations.pooler import POOLERS, LinearHeads
from probe.evaluations.trainer import Schedule, Source

PREFIX = ("drop", "keep")
# V-JEPA 2's grid (configs/eval/vitl/in1k.yaml lines 28-147): 4 lrs x 5 weight decays
LRS = (5e-4, 1e-3, 1.5e-3, 2e-3)
WDS = (8e-3, 4e-3, 2e-3, 1e-3, 5e-4)


def _shape(X: Any) -> tuple[int, ...]:
    """One row's shape, read (a row selection says nothing of a third axis until read)."""
    return tuple(Source(X).read(0, 1).shape[1:])


def _schedule(*, epochs: int, warmup_epochs: float, start_lr: float | None, final_lr: float,
              first_step: int) -> Schedule:  # fmt: skip
    if int(epochs) < 1:
        raise ProbeError(f"eval.epochs={epochs} must be a positive integer, e.g. 20")
    if not 0 <= float(warmup_epochs) <= int(epochs):
        raise ProbeError(f"eval.warmup_epochs={warmup_epochs} must be in 0..eval.epochs={epochs}")
    if int(first_step) not in (0, 1):
        raise ProbeError(f"eval.first_step={first_step} must be 1 (V-JEPA 2) or 0 (CLIP_benchmark)")
    return Schedule(epochs=int(epochs), warmup_epochs=float(warmup_epochs),
                    start_lr=None if start_lr is None else float(start_lr),
                    final_lr=float(final_lr), first_step=int(first_step))  # fmt: skip


def _settings(name: str, *, lrs: Any, wds: Any, epochs: int, batch_size: int, seed: int,
              search: Any, wd_without_val: Any, buffer_mb: float, schedule: dict[str, Any],
              skip_tokens: int = 0, describe: dict[str, Any]) -> Settings:  # fmt: skip
    lrs, wds = check_grid(name, lrs, wds, search=search, wd_without_val=wd_without_val)
    if int(batch_size) < 1:
        raise ProbeError(f"eval.batch_size={batch_size} must be a positive integer, e.g. 1024")
    if not float(buffer_mb) > 0:
        raise ProbeError(f"eval.buffer_mb={buffer_mb} must be positive, e.g. 2048")
    return Settings(lrs=lrs, wds=wds, schedule=_schedule(epochs=epochs, **schedule),
                    batch_size=int(batch_size), seed=int(seed), search=search,
                    wd_without_val=None if wd_without_val is None else float(wd_without_val),
                    buffer_mb=float(buffer_mb), skip_tokens=skip_tokens,
                    describe=describe)  # fmt: skip


def check_tokens(task: Task, *, name: str, prefix: str) -> tuple[int, int, int]:
    """(tokens attended, width, prefix tokens skipped) of token features, or a one-line
    refusal of pooled ones."""
    shape = _shape(task.train[0])
    if len(shape) != 2:
        raise ProbeError(
            f"eval={name} needs token features (N x T x D) and got pooled ones (N x "
            f"{'x'.join(map(str, shape))}): set encoder.feature=tokens (the token cache), or "
            "use eval=linear or eval=sgd_linear on pooled features"
        )
    if prefix not in PREFIX:
        raise ProbeError(f"eval.prefix={prefix!r} is not valid; allowed: {', '.join(PREFIX)}")
    skip = int(task.prefix_tokens) if prefix == "drop" else 0
    if shape[0] - skip < 1:
        raise ProbeError(f"eval={name}: {shape[0]} tokens a row, {skip} of them prefix tokens: "
                         "no patch token to attend over; set eval.prefix=keep")  # fmt: skip
    return shape[0] - skip, shape[1], skip


def check_settings(settings: Any, *, width: int | None) -> None:
    """The trained heads' own settings, from the config alone, before anything is extracted:
    the schedule, and the attention heads against the encoder's width when the config names
    it (the tokens' width is checked again when they are read)."""
    if settings.get("epochs") is None:  # not a trained head's config (linear, knn, fewshot)
        return
    _schedule(epochs=settings.get("epochs"), warmup_epochs=settings.get("warmup_epochs", 0),
              start_lr=settings.get("start_lr"), final_lr=settings.get("final_lr", 0.0),
              first_step=settings.get("first_step", 1))  # fmt: skip
    if settings.get("pooler") is not None and width:
        check_heads(int(width), settings.get("heads"), settings.get("queries", 1),
                    str(settings.get("pooler")))  # fmt: skip


def check_heads(width: int, heads: int | None, queries: int, pooler: str) -> int:
    if pooler not in POOLERS:
        raise ProbeError(f"eval.pooler={pooler!r} is not valid; allowed: {', '.join(POOLERS)}")
    if int(queries) < 1:
        raise ProbeError(f"eval.queries={queries} must be a positive integer, e.g. 1")
    if heads is None:
        if width % 64:
            raise ProbeError(f"eval.heads=null means width / 64, but the tokens are {width} wide; "
                             f"set eval.heads to a divisor of {width}")  # fmt: skip
        return width // 64
    if int(heads) < 1 or width % int(heads):
        raise ProbeError(f"eval.heads={heads} must divide the token width {width}, e.g. "
                         f"eval.heads={max(1, width // 64)}")  # fmt: skip
    return int(heads)


def evaluate(
    task: Task,
    *,
    name: str = "attentive",
    pooler: str = "vjepa2",
    queries: int = 1,
    heads: int | None = None,
    mlp_ratio: float = 4.0,
    prefix: str = "drop",
    lrs: Sequence[float] = LRS,
    wds: Sequence[float] = WDS,
    epochs: int = 20,
    batch_size: int = 1024,
    warmup_epochs: float = 5,
    start_lr: float | None = 2e-4,
    final_lr: float = 0.0,
    first_step: int = 1,
    seed: int = 0,
    search: Callable[..., Any] | None = None,
    wd_without_val: float | None = None,
    buffer_mb: float = 2048,
    input: str = "tokens",  # noqa: A002 - the config's key: what the evaluation takes
) -> Outcome:
    """`eval=attentive`: V-JEPA 2's attentive probe (or AIM's, `pooler=aim`) on tokens."""
    tokens, width, skip = check_tokens(task, name=name, prefix=prefix)
    n_heads = check_heads(width, heads, queries, pooler)
    if not float(mlp_ratio) > 0:
        raise ProbeError(f"eval.mlp_ratio={mlp_ratio} must be positive, e.g. 4.0")
    describe = {"pooler": pooler, "queries": int(queries), "heads": n_heads,
                "mlp_ratio": float(mlp_ratio), "tokens": tokens, "prefix_tokens_skipped": skip,
                "width": width}  # fmt: skip
    settings = _settings(name, lrs=lrs, wds=wds, epochs=epochs, batch_size=batch_size,
                         seed=seed, search=search, wd_without_val=wd_without_val,
                         buffer_mb=buffer_mb, skip_tokens=skip, describe=describe,
                         schedule={"warmup_epochs": warmup_epochs, "start_lr": start_lr,
                                   "final_lr": final_lr, "first_step": first_step})  # fmt: skip
    make = partial(POOLERS[pooler], dim=width, num_classes=task.num_classes, seed=settings.seed,
                   queries=int(queries), heads=n_heads, mlp_ratio=float(mlp_ratio))  # fmt: skip
    return grid_probe(task, name=name, make_heads=lambda g: make(grid=g), settings=settings)


def evaluate_linear(
    task: Task,
    *,
    name: str = "sgd_linear",
    lrs: Sequence[float] = LRS,
    wds: Sequence[float] = WDS,
    epochs: int = 20,
    batch_size: int = 1024,
    warmup_epochs: float = 5,
    start_lr: float | None = 2e-4,
    final_lr: float = 0.0,
    first_step: int = 1,
    seed: int = 0,
    search: Callable[..., Any] | None = None,
    wd_without_val: float | None = None,
    buffer_mb: float = 2048,
    input: str = "pooled",  # noqa: A002 - the config's key: what the evaluation takes
) -> Outcome:
    """`eval=sgd_linear`: the same trainer with a linear head on pooled (N x D) features."""
    shape = _shape(task.train[0])
    if len(shape) != 1:
        raise ProbeError(
            f"eval={name} takes pooled features (N x D) and got N x {'x'.join(map(str, shape))} "
            "(tokens): use eval=attentive on tokens, or a pooled encoder.feature"
        )
    settings = _settings(name, lrs=lrs, wds=wds, epochs=epochs, batch_size=batch_size,
                         seed=seed, search=search, wd_without_val=wd_without_val,
                         buffer_mb=buffer_mb, describe={"head": "linear", "width": shape[0]},
                         schedule={"warmup_epochs": warmup_epochs, "start_lr": start_lr,
                                   "final_lr": final_lr, "first_step": first_step})  # fmt: skip
    make = partial(LinearHeads, dim=shape[0], num_classes=task.num_classes, seed=settings.seed)
    return grid_probe(task, name=name, make_heads=lambda g: make(grid=g), settings=settings)
