"""The video datasets as images (UCF101, Kinetics-700): the middle-frame rule, the official
split lists, the counts of a partial copy, and the extraction command.

`tests/test_datasets.py` runs both configs against pre-extracted frames (tests/fakes_video.py).
Here: UCF101's lists parsed as the official zip has them; Kinetics' listed / found / missing;
`python -m probe.datasets.frames` on the official layouts. PyAV is not a dependency: where it
is installed, tiny real videos are written and decoded; where it is not, those tests skip and
the extraction's orchestration is checked with a decoder that reads our own test videos'
stand-ins (every other step is the real one).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import fakes
import fakes_video
import numpy as np
import pytest
from conftest import compose_cfg
from PIL import Image

from probe.core.errors import ProbeError
from probe.core.factory import make
from probe.datasets import frames, ucf101
from probe.run import run

HAS_AV = importlib.util.find_spec("av") is not None
NO_AV = "PyAV is not installed (pip install av): real videos cannot be written or decoded here"


def test_middle_index_is_n_over_2() -> None:
    """Of n decoded frames, index n // 2: the only one for n=1, the later central one for even
    n, the exact middle for odd n (a 10 s clip at 30 fps: frame 150 of 0..299)."""
    assert [frames.middle_index(n) for n in (1, 2, 3, 4, 5, 299, 300)] == [0, 1, 1, 2, 2, 149, 150]
    with pytest.raises(ValueError, match="0 frames"):
        frames.middle_index(0)


# --- UCF101's official lists -------------------------------------------------------------------


def test_ucf101_lists_as_the_official_zip_has_them(tmp_path: Path) -> None:
    lists = tmp_path / "ucf101" / "ucfTrainTestlist"
    written = fakes_video.write_ucf_lists(lists, fold=2)
    assert (lists / "classInd.txt").read_bytes().startswith(b"1 YoYo\r\n")
    got = ucf101.listing(root=str(tmp_path / "ucf101"), fold=2)
    assert got.classes == ["YoYo", "ApplyEyeMakeup", "HandstandPushups"]  # classInd's order
    for split in ("train", "test"):
        clips = got.splits[split]
        assert [(c.video, c.label) for c in clips] == written[split]
        assert {c.listing for c in clips} == {f"{split}list02"}
    clip = got.splits["test"][-1]  # no class number on a test line: the folder decides
    assert (clip.cls, clip.clip_id, clip.label) == (
        "HandstandPushups",
        "v_HandStandPushups_g06_c02",
        2,
    )
    assert len(got.splits["train"]) == 12 and len(got.splits["test"]) == 6


def test_ucf101_list_errors_name_file_and_line(tmp_path: Path) -> None:
    lists = tmp_path / "ucf101" / "ucfTrainTestlist"
    fakes_video.write_ucf_lists(lists)
    train = lists / "trainlist01.txt"
    good = train.read_bytes()
    lines = good.split(b"\r\n")
    lines[2] = lines[2].replace(b" 1", b" 2")  # YoYo's clip said to be class 2
    train.write_bytes(b"\r\n".join(lines))
    with pytest.raises(ProbeError, match=rf"{train} line 3 .*class 2 is not YoYo's 1"):
        ucf101.listing(root=str(tmp_path / "ucf101"))
    lines[2] = b"Juggling/v_Juggling_g01_c01.avi 1"
    train.write_bytes(b"\r\n".join(lines))
    with pytest.raises(ProbeError, match="class folder 'Juggling' is not in classInd.txt"):
        ucf101.listing(root=str(tmp_path / "ucf101"))
    with pytest.raises(ProbeError, match=r"dataset.fold=4 is not an official split; use 1, 2 or 3"):
        ucf101.listing(root=str(tmp_path / "ucf101"), fold=4)
    train.write_bytes(good)
    (lists / "testlist01.txt").unlink()
    with pytest.raises(ProbeError, match=r"testlist01.txt does not exist\. Unzip UCF101Train"):
        ucf101.listing(root=str(tmp_path / "ucf101"))


# --- what a partial copy records ---------------------------------------------------------------


def built(name: str, data_root: Path, *extra: str):
    fake = fakes.make(name, data_root)
    return make(compose_cfg([f"dataset={name}", f"data_root={data_root}", *extra]).dataset), fake


def test_kinetics_records_listed_found_and_missing(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    ds, fake = built("kinetics700", tmp_path / "data")
    assert ds.info["listed"] == {"train": 15, "test": 9}
    assert ds.info["found"] == fake.sizes == {"train": 12, "test": 6}
    assert ds.info["missing"] == {"train": 3, "test": 3}
    assert "index n // 2" in ds.info["frames"]
    assert "12 of 15 listed train clips have a middle frame" in caplog.text
    assert ds.classes == sorted(fakes_video.KINETICS_LABELS)


def test_ucf101_records_its_fold_and_needs_frames(tmp_path: Path) -> None:
    ds, _ = built("ucf101", tmp_path / "data")
    assert ds.info["fold"] == 1 and ds.info["missing"] == {"train": 0, "test": 0}
    fakes_video.write_ucf_lists(tmp_path / "data" / "ucf101" / "ucfTrainTestlist", fold=2)
    cfg = compose_cfg(["dataset=ucf101", f"data_root={tmp_path / 'data'}", "dataset.fold=2"])
    with pytest.raises(ProbeError, match="none of the 12 train clips has a frame") as err:
        make(cfg.dataset)  # fold 2's lists, no frames extracted for them yet
    assert "python -m probe.datasets.frames dataset=ucf101 data_root=DIR" in str(err.value)


def test_a_run_on_middle_frames_records_the_counts(dirs, tmp_path: Path) -> None:
    """`python -m probe dataset=ucf101` on extracted frames, through the real pipeline."""
    fakes.make("ucf101", tmp_path / "data")
    rec = run(compose_cfg([*dirs, "dataset=ucf101", "bootstrap.resamples=20", "probe.tol=1e-2"]))
    assert (rec["n_train"] + rec["n_val"], rec["n_test"]) == (12, 6)
    info = rec["dataset_info"]
    assert info["listed"] == info["found"] == {"train": 12, "test": 6} and info["fold"] == 1


# --- the extraction command ---------------------------------------------------------------------


def write_video(path: Path, levels: list[int], *, size: int = 16) -> Path:
    """A video of solid grey frames at `levels`, as UCF101's files are (MPEG-4 part 2 in AVI)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for level in levels:
            image = np.full((size, size, 3), level, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def grey(level: int) -> Image.Image:
    return Image.fromarray(np.full((16, 16, 3), level, dtype=np.uint8))


def stand_in(path: Path) -> Image.Image:
    """The decoder's stand-in where PyAV is absent: the test writes each "video" as the text of
    the grey level its middle frame has."""
    return grey(int(path.read_text()))


def ucf_archive(data_root: Path, *, videos: bool) -> dict[str, list[tuple[str, int]]]:
    """UCF101's official layout: the split lists and UCF-101/{Class}/v_*.avi, the last test
    clip's video absent. Clip k's middle frame is grey level 10 * k."""
    base = data_root / "ucf101"
    clips = fakes_video.write_ucf_lists(base / "ucfTrainTestlist")
    every = clips["train"] + clips["test"]
    for k, (rel, _) in enumerate(every[:-1]):
        if videos:  # 5 frames: the middle one, index 2, is the clip's level
            write_video(base / "UCF-101" / rel, [0, 250, 10 * k, 250, 0])
        else:
            (base / "UCF-101" / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / "UCF-101" / rel).write_text(str(10 * k))
    return clips


@pytest.mark.parametrize(
    "real", [pytest.param(True, marks=pytest.mark.skipif(not HAS_AV, reason=NO_AV)), False]
)
def test_extraction_writes_what_the_reader_reads(real: bool, tmp_path: Path, caplog) -> None:
    data = tmp_path / "data"
    clips = ucf_archive(data, videos=real)
    cfg = compose_cfg(["dataset=ucf101", f"data_root={data}"]).dataset
    counts = frames.extract(cfg, workers=2, decode=None if real else stand_in)
    assert counts["listed"] == 18 and counts["extracted"] == 17 and not counts["failed"]
    assert counts["missing"] == [clips["test"][-1][0]]
    ds = make(cfg)
    assert ds.info["found"] == {"train": 12, "test": 5} and ds.info["missing"]["test"] == 1
    every = clips["train"] + clips["test"]
    split = ds.splits["test"]
    for i, sample_id in enumerate(split.ids):
        rel = sample_id.removeprefix("frames/testlist01/").removesuffix(".jpg") + ".avi"
        k = [r for r, _ in every].index(rel)
        assert abs(np.asarray(split.load(split.items[i])).astype(int).mean() - 10 * k) < 3
    again = frames.extract(cfg, workers=1, decode=None if real else stand_in)  # resumes
    assert again["extracted"] == 0


def test_extraction_finds_a_flat_kinetics_copy_and_records_failures(tmp_path: Path) -> None:
    """Clips in train/ and val/ without class folders (a copy arranged otherwise) are found by
    their file name, or by their YouTube id alone; one that does not decode is logged and gets
    no frame."""
    base = tmp_path / "data" / "kinetics700"
    for listing, n in (("train", 2), ("val", 1)):
        rows = fakes_video.kinetics_rows(listing, n)
        fakes_video.write_kinetics_csv(base / "k700-2020" / "annotations" / f"{listing}.csv", rows,
                                       listing)  # fmt: skip
        for j, (_, clip_id) in enumerate(rows):
            (base / "k700-2020" / listing).mkdir(parents=True, exist_ok=True)
            name = clip_id.rsplit("_", 2)[0] if j == 1 else clip_id  # one named by its YouTube id
            (base / "k700-2020" / listing / f"{name}.webm").write_text(str(20 * j))
    broken = base / "k700-2020" / "val" / f"{fakes_video.kinetics_rows('val', 1)[2][1]}.webm"
    broken.write_text("not a number")
    cfg = compose_cfg(["dataset=kinetics700", f"data_root={tmp_path / 'data'}"]).dataset
    counts = frames.extract(cfg, decode=stand_in)
    assert counts["extracted"] == 8 and counts["failed"] == [str(broken)] and not counts["missing"]
    ds = make(cfg)
    assert ds.info["listed"] == {"train": 6, "test": 3} and ds.info["missing"] == {
        "train": 0,
        "test": 1,
    }


def test_extraction_without_pyav_says_what_to_install(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setitem(__import__("sys").modules, "av", None)  # `import av` fails, as without it
    ucf_archive(tmp_path / "data", videos=False)
    with pytest.raises(SystemExit) as stop:
        frames.main(["dataset=ucf101", f"data_root={tmp_path / 'data'}"])
    assert stop.value.code == 2
    assert (
        "extracting video frames needs PyAV, which is not installed: pip install av" in caplog.text
    )
    with pytest.raises(ProbeError, match="dataset digits is not a video dataset"):
        frames.extract(compose_cfg(["dataset=digits"]).dataset, decode=stand_in)


@pytest.mark.skipif(not HAS_AV, reason=NO_AV)
def test_middle_frame_of_a_real_video(tmp_path: Path) -> None:
    """4 and 5 frames: index 2 both times (the later central frame of an even count)."""
    for levels in ([0, 80, 160, 240], [0, 60, 120, 180, 240]):
        image = frames.middle_frame(write_video(tmp_path / f"{len(levels)}.avi", levels))
        assert image.mode == "RGB" and image.size == (16, 16)
        assert abs(np.asarray(image).astype(int).mean() - levels[2]) < 3
