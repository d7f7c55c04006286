"""Hugging Face datasets: a hub id, a local `save_to_disk` directory, or a directory of parquet.

Used by the generic `hf` config (`dataset.path=...`) and by any dataset config with an `hf:`
block when run with `dataset.source=hf` (the block's keys win over the top-level ones, so a
config can keep its torchvision `splits` beside the hub's split names). `splits` maps our split
names to the hub's: e.g. `ethz/food101`'s `validation` is the protocol's test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.core.images import to_rgb
from probe.datasets.base import ImageDataset, Split
from probe.datasets.common import SKIP_FIX, Meta, assemble

DEFAULTS = {
    "path": None,
    "revision": None,
    "config": None,  # a hub dataset's configuration name
    "cache_dir": None,  # where `datasets` keeps its Arrow copy (default: its own cache)
    "splits": {"train": "train", "test": "test"},
    "image_column": "image",
    "label_column": "label",
}


class HFImages:
    """Row index -> 8-bit RGB PIL image of an HF dataset (decoded on access, through
    `probe.core.images.to_rgb` like every loader); picklable."""

    def __init__(self, ds: Any, column: str, dataset: str, split: str) -> None:
        self.ds = ds.select_columns([column])
        self.column = column
        self.dataset = dataset
        self.split = split

    def __call__(self, index: int) -> Any:
        try:
            image = self.ds[int(index)][self.column]
            image.load()
            return to_rgb(image)
        except Exception as err:  # noqa: BLE001 - any decode failure of a stored image
            raise ProbeError(
                f"dataset {self.dataset}: cannot decode image {self.split}/{index} "
                f"(column {self.column!r}; {type(err).__name__}: {err}). Fix or re-download "
                f"that copy, or {SKIP_FIX}"
            ) from None


def is_saved_to_disk(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def open_splits(opts: dict[str, Any], *, dataset: str) -> dict[str, Any]:
    """Our split name -> `datasets.Dataset`, from the hub or a local directory."""
    import datasets

    path = str(opts["path"])
    local = Path(path).expanduser()
    wanted = dict(opts["splits"])
    looks_local = local.is_absolute() or path.startswith(".") or local.exists()
    if looks_local and not local.exists():
        raise ProbeError(
            f"dataset {dataset}: directory {local} does not exist; set dataset.path to a "
            "save_to_disk directory, a directory of parquet files, or a hub id"
        )
    try:
        if looks_local and is_saved_to_disk(local):
            loaded = datasets.load_from_disk(str(local))
            if isinstance(loaded, datasets.Dataset):
                loaded = datasets.DatasetDict({"train": loaded})
        else:
            loaded = datasets.load_dataset(
                str(local) if looks_local else path, name=opts["config"],
                revision=opts["revision"], cache_dir=opts["cache_dir"],
            )  # fmt: skip
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as err:
        raise ProbeError(
            f"dataset {dataset}: could not load Hugging Face dataset {path!r} "
            f"({type(err).__name__}: {err}). Check the id or path; offline, download it first "
            "(huggingface-cli download --repo-type dataset ID) or save_to_disk a copy"
        ) from err
    missing = [f"{ours}={theirs}" for ours, theirs in wanted.items() if theirs not in loaded]
    if missing:
        raise ProbeError(
            f"dataset {dataset}: {path} has no split {', '.join(missing)}; it has "
            f"{', '.join(loaded)}. Set dataset.splits (e.g. {{train: train, test: validation}})"
        )
    return {ours: loaded[theirs] for ours, theirs in wanted.items()}


def to_split(ds: Any, opts: dict[str, Any], *, split: str, dataset: str) -> tuple[Split, Any]:
    for key in ("image_column", "label_column"):
        if opts[key] not in ds.column_names:
            raise ProbeError(
                f"dataset {dataset}: the {split} split has no column {opts[key]!r}; its columns "
                f"are {', '.join(ds.column_names)}. Set dataset.{key}"
            )
    column = opts["label_column"]  # one Arrow read, not a row loop (1M labels: 28 s -> 1 s)
    labels = np.asarray(ds.with_format("numpy", columns=[column])[:][column], dtype=np.int64)
    ids = [f"{split}/{i}" for i in range(len(labels))]
    load = HFImages(ds, opts["image_column"], dataset, split)
    feature = ds.features[opts["label_column"]]
    return Split(items=list(range(len(labels))), labels=labels, load=load, ids=ids), feature


def build(*, hf: dict[str, Any] | None = None, **cfg: Any) -> ImageDataset:
    meta = Meta.of(cfg)
    opts = {k: cfg.get(k, v) for k, v in DEFAULTS.items()}
    if cfg.get("source") == "hf" and not hf and "path" not in cfg:
        raise ProbeError(
            f"dataset {meta.name}: no Hugging Face copy is configured; add one with "
            "+dataset.hf.path=ID '+dataset.hf.splits={train: train, test: test}' (and "
            "+dataset.hf.image_column / label_column where they are not image / label)"
        )
    opts.update({k: v for k, v in (hf or {}).items() if v is not None})
    if not all(isinstance(v, str) for v in dict(opts["splits"]).values()):
        raise ProbeError(
            f"dataset {meta.name}: the hub split names are not set; use "
            "'+dataset.hf.splits={train: NAME, test: NAME}' (our split: the copy's split)"
        )
    if not opts["path"]:
        raise ProbeError(
            f"dataset {meta.name}: set dataset.path (or dataset.hf.path) to a hub id, a "
            "save_to_disk directory or a directory of parquet files"
        )
    splits: dict[str, Split] = {}
    classes = None
    for split, ds in open_splits(opts, dataset=meta.name).items():
        splits[split], feature = to_split(ds, opts, split=split, dataset=meta.name)
        classes = classes or list(getattr(feature, "names", []) or []) or None
    source = f"huggingface {opts['path']}" + (f"@{opts['revision']}" if opts["revision"] else "")
    return assemble(meta, splits, classes=classes, info={"source": source})
