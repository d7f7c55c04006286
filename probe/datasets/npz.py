"""Features computed elsewhere, in one `.npz` file: probe them with `encoder=precomputed`.

The file holds `x_train`, `y_train`, `x_test`, `y_test` and optionally `x_val`, `y_val` (an
official validation split; without it val is carved from train like any dataset). X arrays
are float (N x D), labels integers (N,). Items are row indices and `load` returns the row.

Members saved uncompressed (`np.savez`) are memory-mapped straight out of the zip, so the
file is never read whole and DataLoader workers share the page cache; compressed members
(`np.savez_compressed`) are read into memory once per process. Every sample id carries the
file's SHA-256, so the feature cache can never serve rows of an older file with the same name.
"""

from __future__ import annotations

import hashlib
import logging
import math
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from probe.core.errors import ProbeError
from probe.datasets.base import ImageDataset, Split, resolve_val

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


def _member_header(path: Path, key: str) -> tuple[tuple, bool, np.dtype, zipfile.ZipInfo]:
    """(shape, fortran order, dtype, zip entry) of member `key`, read from its .npy header;
    a header that claims more bytes than the member holds (a truncated or hand-edited file)
    is refused here, before anything maps or allocates that many."""
    bad = f"dataset.path={path}: array {key!r}"
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(f"{key}.npy")
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                shape, fortran, dtype = _HEADERS[version](fh)
                header = fh.tell()
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise ProbeError(f"{bad} has no readable .npy header ({err}); write the file again "
                         "with np.savez") from err  # fmt: skip
    need = math.prod(shape) * dtype.itemsize
    if not dtype.hasobject and need > info.file_size - header:
        raise ProbeError(
            f"{bad} claims shape {shape} ({need:,} bytes) but the file holds "
            f"{info.file_size - header:,} bytes of it: it is truncated or damaged; write it again"
        )
    return shape, fortran, dtype, info


_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
            (3, 0): np.lib.format.read_array_header_2_0}  # fmt: skip


def _member_memmap(path: Path, key: str) -> np.ndarray | None:
    """A read-only memmap of an uncompressed npz member, or None if it is compressed."""
    shape, fortran, dtype, info = _member_header(path, key)
    if info.compress_type != zipfile.ZIP_STORED or dtype.hasobject:
        return None  # objects: refused later through np.load(allow_pickle=False)
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        fh.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(fh)
        _HEADERS[version](fh)
        offset = fh.tell()
    order = "F" if fortran else "C"
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, order=order, offset=offset)


def _read(path: Path, key: str) -> np.ndarray:
    arr = _member_memmap(path, key)
    if arr is not None:
        return arr
    try:
        with np.load(path, allow_pickle=False) as data:
            return data[key]
    except ValueError as err:  # object arrays need pickle: refused
        raise ProbeError(
            f"dataset.path={path}: array {key!r} is stored as Python objects (a pickle), which "
            "is refused for safety; save plain numeric arrays (np.savez(path, x_train=..., ...))"
        ) from err
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise ProbeError(f"dataset.path={path}: array {key!r} is damaged ({err}); write the "
                         "file again") from err  # fmt: skip


class _Rows:
    """Row index -> feature vector. Pickles as (path, key): workers reopen it lazily."""

    def __init__(self, path: Path, key: str, array: np.ndarray | None = None) -> None:
        self.path, self.key, self._array = path, key, array

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "key": self.key, "_array": None}

    def __call__(self, index: int) -> np.ndarray:
        # a copy (rows of a memmap are read-only), in native byte order
        return self._checked(np.array(self.array[index : index + 1]), index)[0]

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = _read(self.path, self.key)
        return self._array

    def block(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop): a read-only view of the memory map (no copy where the rows
        are native float32 or float64)."""
        return self._checked(self.array[start:stop], start)

    def _checked(self, rows: np.ndarray, start: int) -> np.ndarray:
        """`rows` in native byte order, refused where the float32 cache could not hold them
        as they are (checked as they are read: no extra pass over the file)."""
        if not rows.dtype.isnative:
            rows = rows.astype(rows.dtype.newbyteorder("="))
        refuse_values(rows, start=start, what=f"dataset.path={self.path}: {self.key}")
        return rows


F32 = np.finfo(np.float32)


def refuse_values(rows: np.ndarray, *, start: int, what: str) -> None:
    """Features must be finite and, stored in float32 by the cache, within its range: a
    wider float beyond +-3.4e38 would become inf, and a non-zero row whose values all lie
    below float32's smallest normal number (1.2e-38) would lose its digits or become 0."""
    rows = rows.reshape(len(rows), -1)
    finite = np.isfinite(rows).all(axis=1)
    if not finite.all():
        raise ProbeError(f"{what} row {start + int(np.argmin(finite))} holds NaN or inf; "
                         "features must be finite numbers")  # fmt: skip
    if rows.dtype.itemsize <= 4 or rows.size == 0:
        return  # float16 and float32 values are exactly what the cache stores
    top = np.abs(rows).max(axis=1)
    for bad, why in ((top > F32.max, f"beyond float32's range (+-{F32.max:.3g})"),
                     ((top > 0) & (top < F32.tiny), f"all below {F32.tiny:.3g} (float32 "
                      "would lose their digits)")):  # fmt: skip
        if bad.any():
            i = int(np.argmax(bad))
            raise ProbeError(
                f"{what} row {start + i} holds values {why}, and the feature cache stores "
                f"float32 (|x| up to {top[i]:.3g}); rescale the features"
            )


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def _check_pair(path: Path, split: str, x: np.ndarray, y: np.ndarray) -> None:
    bad = f"dataset.path={path}:"
    if x.ndim != 2:
        raise ProbeError(f"{bad} x_{split} has shape {x.shape}; it must be 2-D (N x D)")
    if not np.issubdtype(x.dtype, np.floating):
        raise ProbeError(f"{bad} x_{split} has dtype {x.dtype}; features must be float")
    if x.shape[1] == 0:
        raise ProbeError(f"{bad} x_{split} has shape {x.shape}: no feature columns (N x D, D >= 1)")
    if y.ndim != 1:
        raise ProbeError(f"{bad} y_{split} has shape {y.shape}; labels must be 1-D (N,)")
    if not (np.issubdtype(y.dtype, np.integer) and y.dtype != np.bool_):
        raise ProbeError(
            f"{bad} y_{split} has dtype {y.dtype}; labels must be integers 0..K-1 "
            "(map class names to indices first)"
        )
    if len(x) != len(y):
        raise ProbeError(f"{bad} x_{split} has {len(x)} rows but y_{split} has {len(y)} labels")
    if len(y) == 0:
        raise ProbeError(f"{bad} the {split} split is empty")
    if y.min() < 0:
        raise ProbeError(f"{bad} y_{split} has negative labels; use 0..K-1")


def _refuse_non_archive(path: Path) -> None:
    """An empty file, or a single .npy saved (or renamed) as .npz, named as such."""
    save = "save the splits with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
    with open(path, "rb") as fh:
        head = fh.read(6)
    if not head:
        raise ProbeError(f"dataset.path={path} is empty (0 bytes); {save}")
    if head == b"\x93NUMPY":
        raise ProbeError(f"dataset.path={path} is a single .npy array, not an .npz archive; {save}")
    if not zipfile.is_zipfile(path):
        raise ProbeError(
            f"dataset.path={path} is not a readable .npz file (no zip archive); {save}"
        )


def load_arrays(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Validated (x, y) per split present in the file."""
    if not path.is_file():
        raise ProbeError(f"dataset.path={path} does not exist; pass dataset.path=FILE.npz")
    _refuse_non_archive(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise ProbeError(f"dataset.path={path} is not a readable .npz file ({err})") from err
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in keys]
    if missing:
        raise ProbeError(
            f"dataset.path={path} lacks {missing}; it needs x_train, y_train, x_test, y_test "
            f"(optionally x_val, y_val); it has {sorted(keys)}"
        )
    if ("x_val" in keys) != ("y_val" in keys):
        raise ProbeError(f"dataset.path={path}: give both x_val and y_val, or neither")
    out = {}
    for split in SPLITS:
        if f"x_{split}" in keys:
            x, y = _read(path, f"x_{split}"), _read(path, f"y_{split}")
            _check_pair(path, split, x, y)
            out[split] = (x, y)
    dims = {s: x.shape[1] for s, (x, _) in out.items()}
    if len(set(dims.values())) != 1:
        raise ProbeError(f"dataset.path={path}: feature widths differ between splits: {dims}")
    return out


def build(
    *,
    path: str | None = None,
    name: str = "npz",
    metric: str = "top1",
    num_classes: int | str = "auto",
    val: Any = None,
    **_: Any,
) -> ImageDataset:
    if not path:
        raise ProbeError("dataset=npz needs the file: pass dataset.path=FILE.npz")
    file = Path(path).expanduser().resolve()
    arrays = load_arrays(file)
    top = max(int(y.max()) for _, y in arrays.values()) + 1
    if num_classes == "auto":
        num_classes = top
    elif int(num_classes) < top:
        raise ProbeError(
            f"dataset.num_classes={num_classes} but {file} has labels up to {top - 1}; "
            "raise it or leave it at auto"
        )
    digest = file_digest(file)[:16]
    rows = {split: _Rows(file, f"x_{split}", x) for split, (x, _) in arrays.items()}
    splits = {
        split: Split(
            items=range(len(y)),
            labels=np.asarray(y, dtype=np.int64),
            load=rows[split],
            ids=[f"{digest}/{split}/{i}" for i in range(len(y))],
            block=rows[split].block,
        )
        for split, (_, y) in arrays.items()
    }
    return ImageDataset(
        name=name,
        num_classes=int(num_classes),
        metric=metric,
        splits=splits,
        val=resolve_val(val, has_val="val" in arrays, rule="present"),  # x_val: the official val
        info={"path": str(file), "sha256_16": digest},
        val_rule="present",
        stamp=file_stamp(file),
    )


def file_stamp(path: Path) -> dict[str, Any]:
    """What tells another or a replaced file without reading it: `stage=probe` compares it
    (`probe.features.cached`) with the file `dataset.path` (`key`) leads to then. `path` is
    the real path (the config's name may be a link); size, times and inode tell a file
    rewritten in place. A file that changed is hashed and checked against the cache; a file
    that is gone is not needed."""
    st = path.stat()
    return {"key": "path", "path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}  # fmt: skip
