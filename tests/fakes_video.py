"""Fakes for the two video datasets as images (UCF101, Kinetics-700): the official split lists
as the archives unpack them, plus middle frames as `python -m probe.datasets.frames` writes
them (`{root}/frames/{list}/{class}/{clip_id}.jpg`). See `fakes`."""

from __future__ import annotations

from pathlib import Path

from fakes import Fake, write_image

# classInd.txt's order, not sorted: a reader that sorts the classes gets the labels wrong.
# The real archive names HandstandPushups' files v_HandStandPushups_*: the folder is the class.
UCF_CLASSES = (("YoYo", "YoYo"), ("ApplyEyeMakeup", "ApplyEyeMakeup"),
               ("HandstandPushups", "HandStandPushups"))  # fmt: skip


def write_ucf_lists(lists: Path, *, fold: int = 1) -> dict[str, list[tuple[str, int]]]:
    """ucfTrainTestlist/ as the official zip has it (CRLF lines; a test line has no class):
    classInd.txt, trainlist0N.txt (groups 1-2) and testlist0N.txt (group 3), 2 clips a group.
    Returns each list's (relative video path, 0-based label)."""
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "classInd.txt").write_bytes(
        "".join(f"{i} {c}\r\n" for i, (c, _) in enumerate(UCF_CLASSES, 1)).encode()
    )
    out: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for y, (folder, stem) in enumerate(UCF_CLASSES):
        for g in (1, 2, 3):
            for c in (1, 2):
                rel = f"{folder}/v_{stem}_g{g + 3 * (fold - 1):02d}_c{c:02d}.avi"
                out["train" if g < 3 else "test"].append((rel, y))
    (lists / f"trainlist{fold:02d}.txt").write_bytes(
        "".join(f"{rel} {y + 1}\r\n" for rel, y in out["train"]).encode()
    )
    (lists / f"testlist{fold:02d}.txt").write_bytes(
        "".join(f"{rel}\r\n" for rel, _ in out["test"]).encode()
    )
    return out


def make_ucf101(data_root: Path) -> Fake:
    """Fold 1's lists and one frame per listed clip; a frame of another fold is ignored."""
    base = data_root / "ucf101"
    clips = write_ucf_lists(base / "ucfTrainTestlist")
    labels: dict[str, dict[str, int]] = {}
    for k, (split, listing) in enumerate((("train", "trainlist01"), ("test", "testlist01"))):
        labels[split] = {}
        for j, (rel, y) in enumerate(clips[split]):
            frame = f"frames/{listing}/{rel.removesuffix('.avi')}.jpg"
            write_image(base / frame, 100 * k + j)
            labels[split][frame] = y
    write_image(base / "frames" / "trainlist02" / "YoYo" / "v_YoYo_g09_c01.jpg", 999)
    return Fake(labels, classes={0: "YoYo", 2: "HandstandPushups"})


KINETICS_LABELS = ("passing American football (in game)", "abseiling", "air drumming")


def kinetics_rows(split: str, n: int) -> list[tuple[str, str]]:
    """(label, clip id) rows: n clips a class, ids as the CVDF files name them."""
    return [(label, f"{split[:2]}{y}{j}abcdefg_{10 * j:06d}_{10 * j + 10:06d}")
            for y, label in enumerate(KINETICS_LABELS) for j in range(n)]  # fmt: skip


def write_kinetics_csv(path: Path, rows: list[tuple[str, str]], split: str) -> None:
    """An annotations CSV as the release has it: a header, labels with spaces quoted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["label,youtube_id,time_start,time_end,split"]
    for label, clip_id in rows:
        youtube_id, start, end = clip_id.rsplit("_", 2)
        shown = f'"{label}"' if " " in label else label
        lines.append(f"{shown},{youtube_id},{int(start)},{int(end)},{split}")
    path.write_text("\n".join(lines) + "\n")


def make_kinetics700(data_root: Path) -> Fake:
    """train.csv and val.csv; the last clip of each class has no frame (a video taken down)."""
    base = data_root / "kinetics700"
    order = sorted(KINETICS_LABELS)  # classes are the labels, sorted
    labels: dict[str, dict[str, int]] = {}
    for k, (split, listing, n) in enumerate((("train", "train", 5), ("test", "val", 3))):
        rows = kinetics_rows(listing, n)
        write_kinetics_csv(base / "k700-2020" / "annotations" / f"{listing}.csv", rows, listing)
        labels[split] = {}
        for j, (label, clip_id) in enumerate(rows):
            if clip_id.startswith(f"{listing[:2]}{KINETICS_LABELS.index(label)}{n - 1}"):
                continue  # listed, never downloaded
            frame = f"frames/{listing}/{label}/{clip_id}.jpg"
            write_image(base / frame, 100 * k + j)
            labels[split][frame] = order.index(label)
    return Fake(labels, classes={0: "abseiling", 2: "passing American football (in game)"})
