"""Noise in the paper tables: our interval, whether it holds the published number, and
whether two encoders really differ.

- Each result carries the bootstrap interval of its test score (`score_ci`) at the level its
  run's `bootstrap.level` set (recorded in its `config` block); a cell shows
  `score ± half-width`, labelled with that level, and one column's cells must share it.
- Whether the published number lies within our interval is a heuristic, not a test of
  reproduction: the interval is our score's test-resampling noise only, and says nothing of
  the published number's own run (there are no published predictions to pair with).
- Two encoders probed on the same test images (the same `test_content_hash`: sample ids and
  labels) are compared pairwise from their saved test outputs (the `.npz` beside each
  result: the predictions, or what a score metric reads, `metrics.scored_output`): the paired
  bootstrap interval of the difference of their scores (`probe.evaluations.bootstrap.
  paired_ci`) at the table's own `bootstrap.level` (`configs/probe_table.yaml`); a
  difference whose interval contains 0 is not significant. The reference is the layout's
  first encoder.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from probe.core.errors import ProbeError
from probe.core.paths import config_dir
from probe.evaluations.bootstrap import paired_ci, significance
from probe.evaluations.metrics import MULTILABEL_METRICS, scored_output
from probe.report.tables.flags import shipped_config

log = logging.getLogger(__name__)


@dataclass
class PairDiff:
    """ours(a) - ours(b) on one dataset, with its paired interval, or why there is none."""

    a: str
    b: str
    dataset: str
    diff: float | None = None
    interval: list[float] | None = None
    why: str | None = None  # set when the pair could not be compared

    @property
    def significant(self) -> bool | None:
        return None if self.interval is None else significance(self.interval)


def percent(level: float) -> str:
    """A level as the tables write it: 0.95 -> `95%`, 0.975 -> `97.5%`."""
    return f"{round(level * 100, 6):g}%"


def default_level() -> float:
    """The level a run gets from the shipped `configs/config.yaml` (`bootstrap.level`)."""
    return float(shipped_config()["bootstrap"]["level"])


def interval_level(record: dict[str, Any], path: Any) -> float:
    """The level of a result's `score_ci`: its config's `bootstrap.level`, else the default.

    Every result with an interval has recorded it since intervals exist; one that lacks it
    (written by hand) gets the shipped default, and its dagger says so.
    """
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    boot = config.get("bootstrap") if isinstance(config.get("bootstrap"), dict) else {}
    level = boot.get("level", default_level())
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ProbeError(
            f"{path}: bootstrap.level={level!r} in its config is not a level in (0, 1); "
            f"rerun it with bootstrap.level={default_level():g} (or move it out of the results dir)"
        )
    return float(level)


def column_level(label: str, cells: list[tuple[Any, float]]) -> float:
    """The one interval level of a column's (result file, level) cells; mixing is refused."""
    levels = sorted({level for _, level in cells})
    if not levels:
        return default_level()
    if len(levels) == 1:
        return levels[0]
    count = {lv: sum(x == lv for _, x in cells) for lv in levels}
    keep = max(levels, key=lambda lv: (count[lv], lv == default_level()))
    listed = "; ".join(
        f"{percent(lv)}: " + ", ".join(str(p) for p, x in cells if x == lv) for lv in levels
    )
    rerun = ", ".join(str(p) for p, x in cells if x != keep)
    raise ProbeError(
        f"column {label} mixes interval levels ({listed}); rerun {rerun} with "
        f"bootstrap.level={keep:g}, or set ci=false for a table without intervals"
    )


def pair_options(given: dict[str, Any] | None) -> dict[str, Any]:
    """The paired differences' bootstrap settings: the table config's `bootstrap`, any key it
    lacks from the shipped `configs/probe_table.yaml`; the level checked."""
    shipped = OmegaConf.load(config_dir() / "probe_table.yaml").get("bootstrap") or {}
    opts = {**OmegaConf.to_container(shipped), **(given or {})}
    level = opts.get("level")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ProbeError(
            f"bootstrap.level={level!r} of the table (its paired differences) is not a level "
            f"in (0, 1); use e.g. bootstrap.level={shipped.get('level')}"
        )
    return opts


def published_within(ci: Any, published: float | None) -> bool | None:
    """Whether the published number lies within our interval (None: cannot tell)."""
    if ci is None or published is None:
        return None
    low, high = ci
    return bool(low <= published <= high)


def _predictions(res: Any, key: str = "test_pred") -> tuple[np.ndarray, np.ndarray] | str:
    """(test labels, the test output `key`: the predictions, or what a score metric reads)
    from the head saved beside a result, or why not."""
    head = res.record.get("head") or {}
    path = Path(res.path).with_suffix(".npz")
    if not head or not path.is_file():
        return "no saved test predictions (.npz beside the result)"
    data = path.read_bytes()
    if head.get("sha256") and hashlib.sha256(data).hexdigest() != head["sha256"]:
        return f"{path} is not the head its result names (SHA-256 differs)"
    with np.load(path, allow_pickle=False) as npz:
        if key not in npz.files:
            return f"{path} holds no {key} (the head of a run scored by another metric)"
        return np.asarray(npz["test_label"]), np.asarray(npz[key])


def pair(a: Any, b: Any, *, metric: str, **bootstrap: Any) -> PairDiff:
    """The paired comparison of two results (`tables.data.Result`) on one dataset."""
    out = PairDiff(a=a.encoder, b=b.encoder, dataset=a.dataset)
    if metric in MULTILABEL_METRICS:  # the heads hold per-class scores, not predictions
        out.why = f"no paired interval for {metric} yet (a multi-label dataset)"
        return out
    ha, hb = a.record.get("test_content_hash"), b.record.get("test_content_hash")
    if ha is None or ha != hb:
        out.why = "not known to be the same test images (test_content_hash differs or absent)"
        return out
    got = [_predictions(r, scored_output(metric)) for r in (a, b)]
    bad = next((g for g in got if isinstance(g, str)), None)
    if bad is not None:
        out.why = bad
        return out
    (ya, pa), (yb, pb) = got
    if len(ya) != len(yb) or not np.array_equal(ya, yb):
        out.why = "the saved test labels differ"
        return out
    out.diff = a.score - b.score
    out.interval = paired_ci(pa, pb, ya, metric=metric, **bootstrap)
    return out
