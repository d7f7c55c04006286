"""UCF101 as images: the middle frame of each clip of one official train/test split.

The official split archive (UCF101TrainTestSplits-RecognitionTask.zip) unpacks to
`ucfTrainTestlist/` with `classInd.txt` (`1 ApplyEyeMakeup` .. `101 YoYo`), and three folds
of `trainlist0N.txt` (`ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1`: path and 1-based
class) and `testlist0N.txt` (the path alone); lines end in CRLF. The videos
(UCF101.rar) unpack to `UCF-101/{Class}/v_{Class}_gGG_cCC.avi`. Fold 1 is the default: its
trainlist01 has the 9,537 clips of the CLIP paper's Table 9 (docs/protocol.md, "where we
differ", for the test count and the paper's average over the three folds).

Classes are `classInd.txt`'s, in its order (0-based here); a clip's class is its folder, and a
train line whose class number disagrees with its folder stops the run naming file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probe.core.errors import ProbeError
from probe.datasets.base import ImageDataset
from probe.datasets.common import require_dir, require_file
from probe.datasets.frames import Clip, Listing, read_frames

FOLDS = (1, 2, 3)


def read_lines(path: Path) -> list[str]:
    """Non-empty lines without their CRLF or LF."""
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def read_classes(path: Path, *, dataset: str) -> list[str]:
    """`classInd.txt`: `index name` lines, 1-based and in order."""
    classes = []
    for number, line in enumerate(read_lines(path), 1):
        index, _, name = line.partition(" ")
        if index != str(number) or not name.strip():
            raise ProbeError(
                f"dataset {dataset}: {path} line {number} is {line!r}, expected '{number} "
                "ClassName'; use the classInd.txt of the official ucfTrainTestlist"
            )
        classes.append(name.strip())
    return classes


def read_split(path: Path, classes: list[str], *, dataset: str) -> list[Clip]:
    """One `trainlist0N.txt` / `testlist0N.txt`: `Class/v_Class_gGG_cCC.avi [index]` lines."""
    index = {c: i for i, c in enumerate(classes)}
    clips = []
    for number, line in enumerate(read_lines(path), 1):
        rel, _, given = line.partition(" ")
        cls, _, filename = rel.partition("/")
        label = index.get(cls)
        if label is None or not filename or (given and given.strip() != str(label + 1)):
            why = (f"class folder {cls!r} is not in classInd.txt" if label is None else
                   f"class {given.strip()} is not {cls}'s {label + 1}")  # fmt: skip
            raise ProbeError(
                f"dataset {dataset}: {path} line {number} ({line!r}): {why}; use the lists of "
                "one unmodified ucfTrainTestlist"
            )
        clips.append(Clip(listing=path.stem, cls=cls, clip_id=Path(filename).stem, label=label,
                          video=rel))  # fmt: skip
    return clips


def listing(
    *, root: str, fold: int = 1, lists_dir: str = "ucfTrainTestlist", videos: str = "UCF-101",
    hint: str = "", name: str = "ucf101", **_: Any,
) -> Listing:  # fmt: skip
    base = Path(root).expanduser()
    if fold not in FOLDS:
        raise ProbeError(f"dataset {name}: dataset.fold={fold!r} is not an official split; use 1, "
                         "2 or 3")  # fmt: skip
    folder = require_dir(base / lists_dir, dataset=name, fix=hint)
    fix = f"Unzip UCF101TrainTestSplits-RecognitionTask.zip into {base} (giving {folder}/)"
    classes = read_classes(require_file(folder / "classInd.txt", dataset=name, fix=fix),
                           dataset=name)  # fmt: skip
    splits = {}
    for split, stem in (("train", "trainlist"), ("test", "testlist")):
        path = require_file(folder / f"{stem}{fold:02d}.txt", dataset=name, fix=fix)
        splits[split] = read_split(path, classes, dataset=name)
    source = f"UCF101 official split {fold} ({folder})"
    return Listing(base=base, classes=classes, splits=splits, videos=base / videos, hint=hint,
                   source=source, extra={"fold": fold})  # fmt: skip


def build(*, frames: str = "frames", **cfg: Any) -> ImageDataset:
    return read_frames(listing(**cfg), frames=frames, **cfg)
