"""The published numbers a paper table sits beside: `results/published/*.csv`, one row per
(model, dataset) as the source prints it, each naming its source; and the metric a dataset's
cells must be scored with for the comparison to mean anything.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from probe.core.errors import ProbeError
from probe.core.paths import config_dir

log = logging.getLogger(__name__)
PUBLISHED_COLUMNS = ("encoder", "dataset", "metric", "score", "source")


@dataclass
class Published:
    score: float
    metric: str
    source: str
    note: str = ""


def read_published(path: str | Path) -> dict[tuple[str, str], Published]:
    """A published CSV: `encoder,dataset,metric,score,source[,note]`; `#` lines are comments."""
    path = Path(path)
    try:
        lines = [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")]
    except OSError as err:
        raise ProbeError(f"published numbers {path}: {err}; check published_dir") from err
    reader = csv.DictReader(lines)
    missing = [c for c in PUBLISHED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ProbeError(f"{path} lacks column(s) {missing}; needs {', '.join(PUBLISHED_COLUMNS)}")
    out: dict[tuple[str, str], Published] = {}
    for i, row in enumerate(reader, start=2):
        try:
            score = float(row["score"])
        except (TypeError, ValueError):
            raise ProbeError(f"{path}: row {i} has score {row['score']!r}, not a number") from None
        if not (row.get("source") or "").strip():
            raise ProbeError(f"{path}: row {i} names no source; every published number needs one")
        out[(row["encoder"], row["dataset"])] = Published(
            score=score, metric=row["metric"], source=row["source"], note=row.get("note") or ""
        )
    return out


def protocol_metric(dataset: str, published: dict[tuple[str, str], Published]) -> str | None:
    """The dataset's metric: its config file's when there is one, else the published CSV's."""
    cfg_file = config_dir() / "dataset" / f"{dataset}.yaml"
    if cfg_file.is_file():
        try:
            metric = OmegaConf.load(cfg_file).get("metric")
        except Exception as err:  # an unparsable config: fall back to the published metric
            log.warning("could not read `metric` from %s (%s)", cfg_file, err)
            metric = None
        if metric:
            return str(metric)
    return next((p.metric for (_, d), p in published.items() if d == dataset), None)


def published_for(
    published: dict[tuple[str, str], Published], encoder: str, dataset: str
) -> Published | None:
    """A cell's published number: the CSV's row for the column's name, else for the model it
    tags (`dinov2_l14@cls` takes `dinov2_l14`'s: a paper prints one number per model)."""
    found = published.get((encoder, dataset))
    return found if found is not None else published.get((encoder.split("@")[0], dataset))
