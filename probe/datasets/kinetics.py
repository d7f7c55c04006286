"""Kinetics as images: the middle frame of each annotated clip of the train and val lists.

The CVDF copy (cvdfoundation/kinetics-dataset, `k700_2020_downloader.sh` and
`k700_2020_extractor.sh`) unpacks to `k700-2020/{train,val,test}/` holding the clips, trimmed
to their annotated segment and named `{youtube_id}_{time_start:06d}_{time_end:06d}.mp4`, and
`k700-2020/annotations/{train,val,test}.csv` with a header line and the columns `label,
youtube_id,time_start,time_end,split` (labels with a comma or a space may be quoted). The CLIP
paper trains on train and reports on val (its Table 9: 494,801 / 31,669, what it could
download); val for the C search is carved from train.

Which clips exist is the copy's business: YouTube takes videos down, so every copy is
partial. The lists define the splits and labels, and the result counts `listed`, `found`
and `missing` per split (`probe.datasets.frames`). Classes are the labels of the configured
lists, sorted (700 for Kinetics-700).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from probe.core.errors import ProbeError
from probe.datasets.base import ImageDataset
from probe.datasets.common import require_dir, require_file
from probe.datasets.frames import Clip, Listing, read_frames

COLUMNS = ("label", "youtube_id", "time_start", "time_end")


def read_annotations(path: Path, *, dataset: str) -> list[tuple[str, str]]:
    """(label, clip id) of each row: the clip id is the CVDF file stem."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        absent = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise ProbeError(
                f"dataset {dataset}: {path} has no column {', '.join(absent)} (header: "
                f"{reader.fieldnames}); use the annotations CSV of the Kinetics release"
            )
        rows = []
        for number, row in enumerate(reader, 2):
            label = (row["label"] or "").strip()
            try:
                start, end = int(row["time_start"]), int(row["time_end"])
            except (TypeError, ValueError):
                start = end = -1
            if not label or "/" in label or start < 0 or end < 0 or not row["youtube_id"]:
                raise ProbeError(
                    f"dataset {dataset}: {path} line {number} ({row}) needs a label without '/', "
                    "a youtube_id and whole-second time_start and time_end"
                )
            rows.append((label, f"{row['youtube_id']}_{start:06d}_{end:06d}"))
    return rows


def listing(
    *, root: str, annotations: str = "k700-2020/annotations", videos: str = "k700-2020",
    lists: Any = None, hint: str = "", name: str = "kinetics700", **_: Any,
) -> Listing:  # fmt: skip
    base = Path(root).expanduser()
    lists = dict(lists or {"train": "train", "test": "val"})
    folder = require_dir(base / annotations, dataset=name, fix=hint)
    fix = f"Place the release's annotation CSVs (train.csv, val.csv) in {folder}"
    rows = {}
    for split, stem in lists.items():
        path = require_file(folder / f"{stem}.csv", dataset=name, fix=fix)
        rows[split] = read_annotations(path, dataset=name)
    repeats = {split: _drop_repeats(split_rows, dataset=name) for split, split_rows in rows.items()}
    classes = sorted({label for split_rows in rows.values() for label, _ in split_rows})
    index = {c: i for i, c in enumerate(classes)}
    splits = {
        split: [Clip(listing=lists[split], cls=label, clip_id=clip_id, label=index[label],
                     video=f"{lists[split]}/{label}/{clip_id}.mp4", alias=clip_id.rsplit("_", 2)[0])
                for label, clip_id in split_rows]
        for split, split_rows in rows.items()
    }  # fmt: skip
    source = f"Kinetics annotations {', '.join(lists.values())} ({folder})"
    extra = {"repeated_rows": repeats} if any(repeats.values()) else {}
    return Listing(base=base, classes=classes, splits=splits, videos=base / videos, hint=hint,
                   source=source, extra=extra)  # fmt: skip


def _drop_repeats(rows: list[tuple[str, str]], *, dataset: str) -> int:
    """Keep a clip listed twice once (one frame, one sample); two labels for it are an error."""
    seen: dict[str, str] = {}
    kept = []
    for label, clip_id in rows:
        if clip_id in seen:
            if seen[clip_id] != label:
                raise ProbeError(
                    f"dataset {dataset}: clip {clip_id} is listed as {seen[clip_id]!r} and as "
                    f"{label!r}; use the annotations of one release"
                )
            continue
        seen[clip_id] = label
        kept.append((label, clip_id))
    dropped = len(rows) - len(kept)
    rows[:] = kept
    return dropped


def build(*, frames: str = "frames", **cfg: Any) -> ImageDataset:
    return read_frames(listing(**cfg), frames=frames, **cfg)
