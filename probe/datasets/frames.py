"""Video datasets as images: the middle frame of each listed clip (UCF101, Kinetics-700).

The CLIP paper evaluates its two video datasets on one image per clip, "the middle frame of
each video clip" (Radford et al. 2021, appendix A.1); neither the paper nor CLIP_benchmark
(LAION-AI/CLIP_benchmark 48de38c1, which has no video dataset) publishes code for it, so the
rule is ours and exact (docs/protocol.md, "where we differ"): decode every frame of the clip's
first video stream in order, n frames in all, and take frame `n // 2` (0-based; of an even
count, the later of the two central frames). Counting decoded frames rather than seeking to
half the container's duration gives the same frame on every machine: duration and frame-count
fields in headers are often missing or wrong, and seeking lands on key frames.

Two layouts. The official archives (videos plus the official split lists) are read only by the
extraction command, which writes each listed clip's middle frame once:

    python -m probe.datasets.frames dataset=ucf101 data_root=DIR [num_workers=8]

to `{root}/{frames}/{list}/{class}/{clip_id}.jpg`, where `{list}` is the stem of the official
list that names the clip (`trainlist01`, `testlist01`; `train`, `val`). The dataset reader
(`read_frames`, called by each family's `build`) reads those JPEGs and the same lists, so a
copy without its videos still probes; a listed clip without a frame (a video missing from a
partial Kinetics copy, or one that does not decode) is counted, per split, in the result's
`dataset_info` (`listed`, `found`, `missing`), as Birdsnap's missing images are.

Decoding needs PyAV (`pip install av`), which is not a dependency: only the extraction needs
it, and it says so in one line when it is absent.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from probe.core.errors import ProbeError
from probe.core.io import write_bytes_atomic
from probe.core.walk import walk_files
from probe.datasets.base import ImageDataset
from probe.datasets.common import Meta, assemble, file_split, require_dir

log = logging.getLogger(__name__)
VIDEO_SUFFIXES = (".avi", ".mp4", ".webm", ".mkv", ".mov")
JPEG_QUALITY = 95  # the stored frame is a JPEG re-encoding of the decoded one (docs/datasets.md)
INSTALL = "pip install av"
PROGRESS = 10_000  # clips between two progress lines of the extraction


@dataclass(frozen=True)
class Clip:
    """One listed clip: the official list naming it, its class and where its video lies."""

    listing: str  # the official list's stem (trainlist01, val): the frames sub-folder
    cls: str  # its class's folder name under the frames folder
    clip_id: str  # the video's file stem; the frame is {clip_id}.jpg
    label: int
    video: str  # relative to the videos folder, as the official layout places it
    alias: str = ""  # a prefix naming the video alone where its file name differs (YouTube id)


@dataclass
class Listing:
    """What a video family reads from the official lists: classes and clips per split."""

    base: Path
    classes: list[str]
    splits: dict[str, list[Clip]]  # protocol split (train, test) -> clips in list order
    source: str
    videos: Path  # the official videos folder (read by the extraction only)
    hint: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def middle_index(n: int) -> int:
    """The middle frame of n decoded frames: index n // 2, 0-based (n = 1: 0; 2: 1; 3: 1)."""
    if n < 1:
        raise ValueError(f"a clip with {n} frames has no middle frame")
    return n // 2


def frame_rel(frames: str, clip: Clip) -> str:
    return f"{frames}/{clip.listing}/{clip.cls}/{clip.clip_id}.jpg"


def read_frames(listing: Listing, *, frames: str, **cfg: Any) -> ImageDataset:
    """The dataset: each split's clips whose frame exists, with listed/found/missing counts."""
    meta = Meta.of(cfg)
    fix = (
        f"Extract the middle frames first: python -m probe.datasets.frames dataset={meta.name} "
        f"data_root=DIR (needs the official videos; {listing.hint})"
    )
    folder = require_dir(listing.base / frames, dataset=meta.name, fix=fix)
    splits, listed, found = {}, {}, {}
    for split, clips in listing.splits.items():
        rels = [frame_rel(frames, c) for c in clips]
        kept = [(r, c.label) for r, c in zip(rels, clips, strict=True)
                if os.path.isfile(listing.base / r)]  # fmt: skip
        listed[split], found[split] = len(clips), len(kept)
        if not kept:
            raise ProbeError(
                f"dataset {meta.name}: none of the {len(clips)} {split} clips has a frame under "
                f"{folder}. {fix}"
            )
        if len(kept) < len(clips):
            log.warning("%s: %d of %d listed %s clips have a middle frame", meta.name,
                        len(kept), len(clips), split)  # fmt: skip
        paths = [listing.base / r for r, _ in kept]
        splits[split] = file_split(paths, [y for _, y in kept], root=listing.base,
                                   dataset=meta.name)  # fmt: skip
    info = {
        "source": listing.source,
        "frames": f"middle frame (index n // 2 of the n decoded frames) in {folder}",
        "listed": listed,
        "found": found,
        "missing": {s: listed[s] - found[s] for s in listed},
        **listing.extra,
    }
    return assemble(meta, splits, classes=listing.classes, info=info)


# --- extraction --------------------------------------------------------------------------------


def middle_frame(path: str | Path) -> Image.Image:
    """The middle frame (`middle_index`) of the first video stream of `path`, as RGB.

    Two passes: the first decodes every frame to count them (no colour conversion), the second
    decodes up to the middle one. Frames are counted, not timestamps, so the answer does not
    depend on a container's duration field or on where a seek lands.
    """
    av = _pyav()
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n = sum(1 for _ in container.decode(stream))
    target = middle_index(n)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i == target:
                return frame.to_image().convert("RGB")
    raise ValueError(f"decoded {n} frames, then fewer than {target + 1} on the second pass")


def _pyav() -> Any:
    try:
        import av
    except ImportError:
        raise ProbeError(
            f"extracting video frames needs PyAV, which is not installed: {INSTALL}"
        ) from None
    return av


class VideoIndex:
    """Where each clip's video is: its official path, else the file of the same stem under its
    list's folder (a flat copy, other class folder names, .webm from a downloader), else the
    one file whose stem starts with the clip's `alias` (a Kinetics YouTube id, as the CVDF's
    own arrange_by_classes.py matches clips by `stem[:11]`)."""

    def __init__(self, videos: Path) -> None:
        self.videos = videos
        self.by_stem: dict[str, dict[str, str]] = {}
        self.by_alias: dict[tuple[str, int], dict[str, list[str]]] = {}

    def find(self, clip: Clip) -> Path | None:
        exact = self.videos / clip.video
        if exact.is_file():
            return exact
        top = clip.video.split("/", 1)[0]
        if top not in self.by_stem:
            folder = self.videos / top
            files = walk_files(folder, keep=lambda n: n.lower().endswith(VIDEO_SUFFIXES),
                               regular=True).files if folder.is_dir() else []  # fmt: skip
            self.by_stem[top] = {Path(f).stem: f for f in files}
        hit = self.by_stem[top].get(clip.clip_id)
        if hit is None and clip.alias:
            key = (top, len(clip.alias))
            if key not in self.by_alias:
                self.by_alias[key] = {}
                for stem, path in self.by_stem[top].items():
                    self.by_alias[key].setdefault(stem[: key[1]], []).append(path)
            found = self.by_alias[key].get(clip.alias, [])
            hit = found[0] if len(found) == 1 else None
        return Path(hit) if hit else None


def extract(
    dataset: Any, *, workers: int = 1, decode: Callable[[Path], Image.Image] | None = None
) -> dict[str, Any]:
    """Write the middle frame of every listed clip that has none yet (a rerun resumes).

    `dataset` is the composed `dataset:` config of a video family; `decode` defaults to
    `middle_frame` (PyAV). A clip whose video is missing or does not decode is logged and left
    without a frame (the reader counts it as missing); nothing else stops the run.
    """
    cfg = dict(dataset)
    name = cfg.get("name")
    family = importlib.import_module(str(cfg.get("_target_", "")).rpartition(".")[0])
    if not hasattr(family, "listing"):
        raise ProbeError(
            f"dataset {name} is not a video dataset; frames are extracted for the video datasets "
            "only (dataset=ucf101, dataset=kinetics700)"
        )
    listing = family.listing(**cfg)
    clips = {(c.listing, c.clip_id): c for cs in listing.splits.values() for c in cs}
    todo = [c for c in clips.values()
            if not (listing.base / frame_rel(cfg["frames"], c)).is_file()]  # fmt: skip
    log.info("%s: %d listed clips, %d have a frame, %d to extract from %s", name, len(clips),
             len(clips) - len(todo), len(todo), listing.videos)  # fmt: skip
    decode = decode or middle_frame
    if todo and decode is middle_frame:
        _pyav()  # before walking the videos: say what to install at once
    if todo:
        require_dir(listing.videos, dataset=name, fix=listing.hint)
    index = VideoIndex(listing.videos)  # resolved here, not from several threads at once
    videos = {c: index.find(c) for c in todo}
    missing = sorted(c.video for c, v in videos.items() if v is None)
    failed: list[str] = []

    def one(clip: Clip) -> bool:
        video = videos[clip]
        if video is None:
            return False
        try:
            image = decode(video)
        except ProbeError:
            raise
        except Exception as err:  # noqa: BLE001 - PyAV raises many kinds; the clip is recorded
            log.warning("%s: cannot decode %s (%s: %s); it gets no frame", name, video,
                        type(err).__name__, err)  # fmt: skip
            failed.append(str(video))
            return False
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
        write_bytes_atomic(listing.base / frame_rel(cfg["frames"], clip), buf.getvalue())
        return True

    written = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, ok in enumerate(pool.map(one, todo), 1):
            written += ok
            if done % PROGRESS == 0:
                log.info("%s: %d of %d clips done", name, done, len(todo))
    counts = {"listed": len(clips), "extracted": written, "missing": missing,
              "failed": sorted(failed)}  # fmt: skip
    if counts["missing"]:
        log.warning("%s: %d listed clips have no video under %s (first: %s)", name,
                    len(counts["missing"]), listing.videos, counts["missing"][0])  # fmt: skip
    log.info("%s: %d frames written under %s; %d videos missing, %d failed to decode", name,
             counts["extracted"], listing.base / cfg["frames"], len(counts["missing"]),
             len(counts["failed"]))  # fmt: skip
    return counts


def _workers(value: Any) -> int:
    if value == "auto":
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        return int(cpus) if cpus else len(os.sched_getaffinity(0))
    return max(1, int(value))


def main(argv: list[str] | None = None) -> int:
    """`python -m probe.datasets.frames dataset=NAME [data_root=DIR] [num_workers=N]`."""
    from probe.core.errors import exit_on_probe_error
    from probe.core.paths import compose_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with exit_on_probe_error(log):
        cfg = compose_config(list(sys.argv[1:] if argv is None else argv))
        extract(cfg.dataset, workers=_workers(cfg.num_workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
