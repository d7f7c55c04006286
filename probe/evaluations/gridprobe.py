"""Trained heads on val-chosen settings: the grid, the choice on val, the final head, the test.

What `eval=attentive` and `eval=sgd_linear` share (`probe.evaluations.attentive`):

1. **The grid.** Every (lr, weight decay) point is a head; the points a search asks for are
   trained together on the protocol's train split (`trainer.train`) and scored on its val
   split by the dataset's metric at the end of training. Without a search
   (`eval.search=null`) every point is trained in one pass and the first best in grid order
   (lrs outer, wds inner, as listed) is chosen. A search (`probe.evaluations.search`, e.g.
   CLIP_benchmark's peak search over the weight decays at one lr) asks for points in rounds;
   each round's new points are trained together.
2. **The final head.** When the protocol's final fit is on train + val (`refit_on`, every
   shipped card with a val split), one head is retrained on train + val at the chosen point
   with the same seed and epochs; when it is on train alone, the val-chosen head is kept
   as it is (retraining it would give the same head). The test split is read only here,
   after the choice: nothing about test can change which head is chosen or its weights.
3. **No val split** (a card whose val rule gives none, as CLIP_benchmark's default run): with
   `eval.wd_without_val` set, one head is trained on train at the first lr and that weight
   decay (CLIP_benchmark: 0); without it the run is refused before any training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.evaluations.bootstrap import interval_fields
from probe.evaluations.heads import TOP, top5_accuracy
from probe.evaluations.metrics import score
from probe.evaluations.outcome import Outcome, Task
from probe.evaluations.pooler import GridHeads
from probe.evaluations.trainer import Schedule, Source, precision, predict, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """The trainer's settings of one evaluation, checked (`attentive.check_settings`)."""

    lrs: tuple[float, ...]
    wds: tuple[float, ...]
    schedule: Schedule
    batch_size: int
    seed: int
    search: Callable[..., Any] | None = None  # a strategy over the wds at one lr
    wd_without_val: float | None = None
    buffer_mb: float = 2048
    skip_tokens: int = 0  # leading tokens left out (the prefix tokens, `eval.prefix=drop`)
    describe: dict[str, Any] = field(default_factory=dict)  # the head's settings, recorded


def _first_best(points: list[int], scores: dict[int, float]) -> int:
    return max(points, key=lambda k: (scores[k], -k))


def grid_probe(
    task: Task, *, name: str, make_heads: Callable[[int], GridHeads], settings: Settings
) -> Outcome:
    """Choose on val, train the final head, score test (see the module docstring)."""
    s = settings
    opts = {"schedule": s.schedule, "batch": s.batch_size, "seed": s.seed,
            "device": task.device, "buffer_mb": s.buffer_mb}  # fmt: skip
    source = {split: Source(getattr(task, split)[0], skip_tokens=s.skip_tokens)
              for split in ("train", "val", "test")}  # fmt: skip
    y_train, y_val = np.asarray(task.train[1]), np.asarray(task.val[1])
    points = [(lr, wd) for lr in s.lrs for wd in s.wds]
    records: list[dict[str, Any]] = []
    trained: dict[int, tuple[GridHeads, int]] = {}
    scores: dict[int, float] = {}

    def score_at(ks: list[int]) -> dict[int, float]:
        new = [k for k in dict.fromkeys(ks) if k not in scores]
        if new:
            t0 = time.perf_counter()
            heads = train(make_heads(len(new)), source["train"], y_train,
                          lrs=[points[k][0] for k in new], wds=[points[k][1] for k in new],
                          **opts)  # fmt: skip
            pred, _ = predict(heads, source["val"], batch=s.batch_size, device=task.device)
            for i, k in enumerate(new):
                scores[k] = score(pred[i], y_val, task.metric)
                trained[k] = (heads, i)
                records.append({"lr": points[k][0], "wd": points[k][1], "val_score": scores[k]})
            log.info("%s: %d heads trained together in %.1fs; val %s %s", name, len(new),
                     time.perf_counter() - t0, task.metric,
                     ", ".join(f"{scores[k]:.2f}" for k in new))  # fmt: skip
        return {k: scores[k] for k in ks}

    if len(y_val) == 0:
        _check_without_val(name, s)
        lr, wd = s.lrs[0], float(s.wd_without_val)
        final = train(make_heads(1), source["train"], y_train, lrs=[lr], wds=[wd], **opts)
        rows, made = "train", "trained at eval.wd_without_val (no val split)"
    else:
        if s.search is None:
            best = _first_best(list(range(len(points))), score_at(list(range(len(points)))))
        else:
            best = s.search(grid=np.asarray(s.wds)).choose(score_at)
        (lr, wd), rows = points[best], task.refit_on
        made = "the val-chosen head" if rows == "train" else "retrained at the chosen point"
        if rows == "train":
            heads, i = trained[best]
            final = heads.keep([i])
        else:
            both = Source(task.train[0], task.val[0], skip_tokens=s.skip_tokens)
            final = train(make_heads(1), both, np.concatenate([y_train, y_val]),
                          lrs=[lr], wds=[wd], **opts)  # fmt: skip
    trained.clear()
    return _outcome(task, name=name, final=final, source=source["test"], settings=s,
                    chosen=(lr, wd), final_fit={"rows": rows, "head": made},
                    records=records)  # fmt: skip


def _outcome(
    task: Task, *, name: str, final: GridHeads, source: Source, settings: Settings,
    chosen: tuple[float, float], final_fit: dict[str, str], records: list[dict[str, Any]],
) -> Outcome:  # fmt: skip
    """The test split, read for the first time: the final head's predictions and record."""
    y = np.asarray(task.test[1], np.int64)
    pred, top = predict(final, source, batch=settings.batch_size, device=task.device,
                        top=min(TOP, task.num_classes))  # fmt: skip
    outputs = {"test_label": y, "test_pred": pred[0], "test_top5": top[0]}
    top5 = top5_accuracy(outputs)
    sched = settings.schedule
    fields = {
        "score": score(outputs["test_pred"], y, task.metric),
        "top5": top5,  # percent; null with fewer than 5 classes
        **interval_fields(
            pred=outputs["test_pred"],
            y=y,
            metric=task.metric,
            top5=outputs["test_top5"] if top5 is not None else None,
            **task.bootstrap,
        ),  # fmt: skip
        "lr": chosen[0],
        "wd": chosen[1],
        "grid": records,  # every trained point with its val score, in the order trained
        "epochs": sched.epochs,
        "batch_size": settings.batch_size,
        "seed": settings.seed,  # the heads' initial weights and the batch order
        "schedule": {
            "warmup_epochs": sched.warmup_epochs,
            "start_lr": sched.start_lr,
            "final_lr": sched.final_lr,
            "first_step": sched.first_step,
        },
        "head_settings": settings.describe,
        "final_fit": final_fit,
        "precision": precision(task.device),
        "selection": "the (lr, wd) with the best val score after training on train (ties: "
        "the first in grid order), then one head retrained on the card's final-fit rows at "
        "it (kept as chosen when those rows are train); test read only by the final head",
    }
    head = {**final.head(0), "lr": np.float64(chosen[0]), "wd": np.float64(chosen[1]),
            "outputs": outputs}  # fmt: skip
    return Outcome(eval=name, fields=fields, head=head, backend="torch")


def _check_without_val(name: str, s: Settings) -> None:
    if s.wd_without_val is None:
        raise ProbeError(
            f"eval={name}: the protocol gives no val split to choose (lr, wd) on; set "
            "eval.wd_without_val=WD to train one head on train at that weight decay "
            "(CLIP_benchmark's rule: 0), or use a card with a val split"
        )
    if len(s.lrs) != 1:
        raise ProbeError(f"eval={name}: no val split to choose among eval.lrs={list(s.lrs)}; "
                         "give one lr")  # fmt: skip


def check_grid(name: str, lrs: Any, wds: Any, *, search: Any, wd_without_val: Any) -> tuple:
    """(lrs, wds) as float tuples; an empty grid, a non-positive lr, a negative weight
    decay or a search over several lrs refused in one line."""
    lrs = tuple(float(v) for v in np.atleast_1d(np.asarray(lrs if lrs is not None else [])))
    wds = tuple(float(v) for v in np.atleast_1d(np.asarray(wds if wds is not None else [])))
    if not lrs or not all(np.isfinite(v) and v > 0 for v in lrs):
        raise ProbeError(f"eval.lrs={list(lrs)} must be a non-empty list of positive learning "
                         f"rates, e.g. eval.lrs=[0.0005,0.001] (eval={name})")  # fmt: skip
    if not wds or not all(np.isfinite(v) and v >= 0 for v in wds):
        raise ProbeError(f"eval.wds={list(wds)} must be a non-empty list of weight decays >= 0, "
                         f"e.g. eval.wds=[0.001,0.004] (eval={name})")  # fmt: skip
    if search is not None and len(lrs) != 1:
        raise ProbeError(f"eval.search walks the weight decays at one lr; eval.lrs={list(lrs)} "
                         "has several: give one lr, or eval.search=null (the grid)")  # fmt: skip
    if wd_without_val is not None and not float(wd_without_val) >= 0:
        raise ProbeError(f"eval.wd_without_val={wd_without_val} must be >= 0 or null")
    return lrs, wds
