"""Files that are not what they claim: refused in one line (exit 2) where they are read, or,
where the bytes are fine but the encoding unusual (big-endian arrays), read correctly.

The `.npz` reader (`probe/datasets/npz.py`), the feature cache (`meta.json` of the wrong
shape, arrays of zero width), the `skip_corrupt` scan memo and images of several sizes under
an encoder without a resize.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import fakes
import numpy as np
import pytest
from conftest import compose_cfg, main_refuses, run_cli
from PIL import Image
from test_npz import features, overrides, write

from probe.core.arrays import read_rows
from probe.core.errors import ProbeError
from probe.core.factory import make
from probe.datasets.npz import build
from probe.run import run

FAST = ["probe.tol=1e-2"]


def _npy(arr: np.ndarray, *, shape: tuple | None = None) -> bytes:
    out = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(arr.dtype), "fortran_order": False,
              "shape": shape or arr.shape}  # fmt: skip
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + arr.tobytes()


def _zip(path: Path, members: dict[str, bytes], *, compressed: bool = False) -> Path:
    how = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=how) as zf:
        for name, data in members.items():
            zf.writestr(f"{name}.npy", data)
    return path


def _members(**override: bytes) -> dict[str, bytes]:
    (x, y), (xt, yt) = features(300), features(90, seed=1)
    return {"x_train": _npy(x), "y_train": _npy(y), "x_test": _npy(xt), "y_test": _npy(yt),
            **override}  # fmt: skip


def _claims_more(compressed: bool):
    def make_file(path: Path) -> Path:
        x, _ = features(300)
        return _zip(path, _members(x_train=_npy(x, shape=(3_000_000, 8))), compressed=compressed)

    return make_file


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _renamed_npy(path: Path) -> Path:
    with open(path, "wb") as fh:
        np.save(fh, features(300)[0])
    return path


def _garbage_header(path: Path) -> Path:
    return _zip(path, _members(y_test=b"\x93NUMPY\x01\x00\xff\xffjunk"))


def _zero_width(path: Path) -> Path:
    return write(path, x_train=np.zeros((300, 0), np.float32), x_test=np.zeros((90, 0), np.float32))


FILES = {
    "empty": (_empty, r"is empty \(0 bytes\); save the splits"),
    "renamed_npy": (_renamed_npy, r"is a single .npy array, not an .npz archive"),
    "claims_more_rows": (_claims_more(False), r"array 'x_train' claims shape \(3000000, 8\) "
                         r"\(96,000,000 bytes\) but the file holds 9,600 bytes"),
    "claims_more_rows_compressed": (_claims_more(True), r"'x_train' claims shape \(3000000, 8\)"),
    "garbage_header": (_garbage_header, r"array 'y_test' has no readable .npy header"),
    "zero_width": (_zero_width, r"x_train has shape \(300, 0\): no feature columns"),
}  # fmt: skip


@pytest.mark.parametrize("case", FILES)
def test_malformed_npz_is_refused_naming_the_file(tmp_path: Path, case: str) -> None:
    make_file, message = FILES[case]
    path = make_file(tmp_path / "bad.npz")
    with pytest.raises(ProbeError, match=message) as err:
        build(path=str(path))
    assert f"dataset.path={path}" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("case", ["empty", "renamed_npy", "claims_more_rows"])
def test_malformed_npz_exits_2_not_through_hydra(dirs, tmp_path: Path, case: str, caplog) -> None:
    """These three left Hydra's instantiate wrapper (exit 1, 'Error in call to target'):
    `python -m probe`'s main, in-process, ends with exit 2 and the one line; the command
    itself, once."""
    path = FILES[case][0](tmp_path / "bad.npz")
    line = main_refuses(overrides(dirs, path), caplog)
    assert re.search(FILES[case][1], line) and "Error in call to target" not in line
    if case == "empty":
        proc = run_cli(overrides(dirs, path), cwd=tmp_path)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, out[-3000:]
        assert "Traceback" not in out and "Error in call to target" not in out


@pytest.mark.parametrize("order", [">f4", ">f8", ">f2"])
def test_big_endian_arrays_read_as_their_values(dirs, tmp_path: Path, order: str) -> None:
    native = run(compose_cfg(overrides(dirs, write(tmp_path / "n.npz"), *FAST)))
    (x, y), (xt, yt) = features(300), features(90, seed=1)
    if order == ">f2":  # float16 keeps fewer digits: compare with its native twin
        x, xt = x.astype(np.float16), xt.astype(np.float16)
        native = run(compose_cfg(overrides(dirs, write(tmp_path / "h.npz", x_train=x, x_test=xt),
                                           *FAST, "dataset.name=h")))  # fmt: skip
    path = write(tmp_path / "b.npz", x_train=x.astype(order), x_test=xt.astype(order),
                 y_train=y.astype(">i8"), y_test=yt.astype(">i4"))  # fmt: skip
    got = run(compose_cfg(overrides(dirs, path, *FAST, "dataset.name=big")))
    assert (got["score"], got["C"]) == (native["score"], native["C"])
    np.testing.assert_array_equal(np.load(Path(got["features"]["train"]) / "features.npy"),
                                  x.astype(np.float32))  # fmt: skip


def test_zero_width_rows_read_without_a_memoryview_error(tmp_path: Path) -> None:
    np.save(tmp_path / "z.npy", np.zeros((5, 0), np.float32))
    mapped = np.load(tmp_path / "z.npy", mmap_mode="r")
    assert read_rows(mapped, 0, 5).shape == (5, 0)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> Path:
    """digits' pixels, extracted once; each test works on its own copy."""
    cache = tmp_path_factory.mktemp("meta") / "c"
    run(compose_cfg([f"cache_dir={cache}", "num_workers=0", "stage=extract"]))
    return cache


def _shapes(good: dict) -> dict[str, object]:
    about = good["dataset"]
    return {
        "list": [], "string": "meta", "number": 3, "null": None,
        "n_string": {**good, "n": "abc"}, "n_missing": {k: v for k, v in good.items() if k != "n"},
        "dim_zero": {**good, "dim": 0}, "n_bool": {**good, "n": True},
        "checksum_list": {**good, "checksum": []},
        "shards_number": {**good, "checksum": {**good["checksum"], "shards": 5}},
        "dataset_list": {**good, "dataset": []},
        "splits_number": {**good, "dataset": {**about, "splits": 5}},
        "num_classes_string": {**good, "dataset": {**about, "num_classes": "many"}},
        "stamp_path_number": {**good, "dataset": {**about, "stamp": {"path": 3, "size": 1,
                                                                     "mtime_ns": 1}}},
    }  # fmt: skip


SHAPES = ["list", "string", "number", "null", "n_string", "n_missing", "dim_zero", "n_bool",
          "checksum_list", "shards_number", "dataset_list", "splits_number",
          "num_classes_string", "stamp_path_number"]  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES)
def test_meta_json_of_the_wrong_shape_is_named_then_rebuilt(tmp_path, extracted, shape) -> None:
    cache = tmp_path / "c"
    shutil.copytree(extracted, cache)
    [meta] = cache.rglob("train-*/meta.json")
    good = json.loads(meta.read_text())
    meta.write_text(json.dumps(_shapes(good)[shape]))
    base = [f"cache_dir={cache}", f"results_dir={tmp_path / 'r'}", "num_workers=0", "eval=knn",
            "eval.k=[1]"]  # fmt: skip
    with pytest.raises(ProbeError, match=r"stage=probe needs cached features.*meta.json is "
                       r"malformed: it (holds|lacks|has|says)") as err:  # fmt: skip
        run(compose_cfg([*base, "stage=probe"]))
    assert "\n" not in str(err.value)
    record = run(compose_cfg(base))  # stage=all rebuilds the entry
    rebuilt = json.loads(meta.read_text())
    assert record["seconds"]["extract"] > 0
    assert (rebuilt["n"], rebuilt["checksum"]) == (good["n"], good["checksum"])


def test_scan_memo_out_of_range_is_rescanned(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PROBE_SCAN_CACHE", str(tmp_path / "scans"))
    fake = fakes.make("imagefolder", tmp_path / "data")
    fakes.truncate(tmp_path / "data" / "folders" / "train" / "ant" / "5.png")
    cfg = compose_cfg(["dataset=imagefolder", *fake.overrides, "dataset.skip_corrupt=true"])
    first = make(cfg.dataset).info["skipped_corrupt"]
    [memo] = [p for p in (tmp_path / "scans").glob("*.json")
              if json.loads(p.read_text())["bad"]]  # fmt: skip
    n = json.loads(memo.read_text())["n"]
    for bad in ([10_000], [-1], [n], [0, 0], ["3"], [1.5], "3", {"i": 3}):
        memo.write_text(json.dumps({"split": "imagefolder/train", "n": n, "bad": bad}))
        assert make(cfg.dataset).info["skipped_corrupt"] == first, bad
    memo.write_text(json.dumps({"n": n + 1, "bad": [0]}))  # another split's outcome
    assert make(cfg.dataset).info["skipped_corrupt"] == first
    memo.write_text(json.dumps([1, 2]))
    assert make(cfg.dataset).info["skipped_corrupt"] == first


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize(("height", "width"), [(10, 12), (4, 4)])
def test_images_of_several_sizes_under_pixels_without_resize(dirs, tmp_path, workers, height,
                                                             width) -> None:  # fmt: skip
    """The fake's images are 8 x 8; one of another size used to fail in torch's collate (or,
    alone in its batch, as a RuntimeError from the shape check after the encoder)."""
    fake = fakes.make("imagefolder", tmp_path / "data")
    image = tmp_path / "data" / "folders" / "train" / "bee" / "10.png"
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(image)
    args = [*dirs, "dataset=imagefolder", *fake.overrides, f"num_workers={workers}",
            "batch_size=4"]  # fmt: skip
    shape = re.escape(f"({height * width * 3},)")
    message = (rf"pixels/imagefolder/train: train/bee/10.png becomes a sample of shape {shape}, "
               r"the split's first \(192,\).*encoder.size=N")  # fmt: skip
    with pytest.raises(ProbeError, match=message):
        run(compose_cfg(args))
    assert not list((tmp_path / "cache").rglob("meta.json"))
    record = run(compose_cfg([*args, "encoder.size=8", "encoder.mode=RGB"]))
    assert record["feature_dim"] == 192
