"""Hateful Memes: is a meme (image with its overlaid text) hateful? 2 classes, ROC AUC.

The CLIP paper's Table 9 lists Hateful Memes with 2 classes, 8,500 train and 500 test images,
scored by ROC AUC. The official release unpacks to `hateful_memes/` with `img/NNNNN.png` and
JSON-lines files, one `{"id", "img", "label", "text"}` object per meme: `train.jsonl` (8,500),
`dev_seen.jsonl` (500), `dev_unseen.jsonl` (540), `test_seen.jsonl` (1,000) and
`test_unseen.jsonl` (2,000), the test files without labels in the challenge's first release.
Table 9's sizes are those of `train.jsonl` and `dev_seen.jsonl`, so those are our train and
test (`splits:` maps ours to the file names); val for the C search is carved from train, as
Table 9 counts no other labelled images. Label 1 is "hateful", the positive class ROC AUC
ranks by. Only the image is probed; the text field is not read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from probe.core.errors import ProbeError
from probe.datasets.base import ImageDataset
from probe.datasets.common import Meta, assemble, file_split, require_dir, require_file

DEFAULT_SPLITS = {"train": "train.jsonl", "test": "dev_seen.jsonl"}
CLASSES = ("not hateful", "hateful")


def read_jsonl(path: Path, *, dataset: str) -> tuple[list[str], list[int]]:
    """(image paths relative to the folder, labels) of one split file, in file order."""
    images, labels = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            image, label = row["img"], row.get("label")
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ProbeError(
                f"dataset {dataset}: {path} line {number} is not a JSON object with 'img' and "
                "'label'; use the files of the unmodified Hateful Memes release"
            ) from None
        if label not in (0, 1):
            why = "has no label" if label is None else f"has label {label!r}, not 0 or 1"
            raise ProbeError(
                f"dataset {dataset}: {path} line {number} {why} (the first release's test "
                "files are unlabelled); map the split to a labelled file, e.g. "
                "dataset.splits.test=dev_seen.jsonl"
            )
        images.append(image)
        labels.append(label)
    return images, labels


def build(
    *, root: str, splits: dict[str, str] | None = None, hint: str = "", **cfg: Any
) -> ImageDataset:
    meta = Meta.of(cfg)
    base = Path(root).expanduser()
    usual = base / "hateful_memes"  # the release's own folder; or root may be that folder
    inside = not usual.is_dir() and (base / DEFAULT_SPLITS["train"]).is_file()
    folder = require_dir(base if inside else usual, dataset=meta.name, fix=hint)
    fix = (f"Unpack the Hateful Memes release into {base}, giving {usual}/img/NNNNN.png and "
           f"the .jsonl split files")  # fmt: skip
    mapping = dict(splits or DEFAULT_SPLITS)
    out = {}
    for split, file_name in mapping.items():
        listing = require_file(folder / file_name, dataset=meta.name, fix=fix)
        images, labels = read_jsonl(listing, dataset=meta.name)
        missing = next((i for i in images if not (folder / i).is_file()), None)
        if missing is not None:
            raise ProbeError(
                f"dataset {meta.name}: {folder / missing} does not exist, but {listing} lists "
                f"it. {fix}"
            )
        out[split] = file_split([folder / i for i in images], labels, root=folder,
                                dataset=meta.name)  # fmt: skip
    files = ", ".join(f"{s}={f}" for s, f in mapping.items())
    info = {"source": f"Hateful Memes release in {folder} ({files})"}
    return assemble(meta, out, classes=list(CLASSES), info=info)
