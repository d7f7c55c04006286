"""Atomic, crash-safe file writes: the one place every file the harness writes goes through.

A temp file in the target directory, fsync, rename, fsync of the directory: a reader (a
table build, a job array started meanwhile, a rerun after a crash) sees the old file or the
new one, never half of one. Temp names carry host and pid, so leftovers of dead writers are
swept on the next write to the same path.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np

from probe.core.errors import ProbeError

HOST = socket.gethostname().replace(".", "_")


def disk_error(err: OSError, path: Path) -> ProbeError:
    """A write failure as a user-fixable error that names the path."""
    hint = {
        errno.ENOSPC: "the disk is full; free space or point cache_dir/results_dir elsewhere",
        errno.EDQUOT: "the disk quota is exceeded; free space or use another directory",
        errno.EROFS: "the filesystem is read-only; choose a writable directory",
        errno.EACCES: "no permission to write there; choose a writable directory",
    }.get(err.errno, "check the directory is writable and has space")
    return ProbeError(f"could not write {path}: {err.strerror or err} ({hint})")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def temp_name(path: Path) -> Path:
    """`.NAME.HOST.PID.tmp` beside `path`; leftovers of dead writers are swept on the next write."""
    for old in path.parent.glob(f".{path.name}.{HOST}.*.tmp"):
        pid = old.name.removesuffix(".tmp").rpartition(".")[2]
        if pid.isdigit() and not pid_alive(int(pid)):
            unlink_quietly(old)
    return path.with_name(f".{path.name}.{HOST}.{os.getpid()}.tmp")


def _write_atomic(path: str | Path, write: Any) -> Path:
    """Call `write(fh)` on a temp file beside `path`, then fsync and rename it into place."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise disk_error(err, path.parent) from err
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        unlink_quietly(tmp)
        raise disk_error(err, path) from err
    except BaseException:  # a stop (SIGTERM, Ctrl-C) mid-write: the old file stays, no temp
        unlink_quietly(tmp)
        raise
    fsync_dir(path.parent)
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return _write_atomic(path, lambda fh: fh.write(data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Any text file (JSON, tables, task lists): old or new, never half."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def save_npy_atomic(path: str | Path, array: np.ndarray) -> Path:
    """np.save (never pickling) through a temp file in the same directory, fsync, rename."""
    return _write_atomic(path, lambda fh: np.save(fh, array, allow_pickle=False))


def save_npz_atomic(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """An uncompressed `.npz` of numeric arrays (never pickled), written like every file here:
    a temp file, fsync, rename. Refuses object arrays, which np.savez would pickle."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    pickled = [k for k, v in arrays.items() if v.dtype.hasobject]
    if pickled:  # a programming error, not a user one
        raise TypeError(f"save_npz_atomic: {pickled} are object arrays and would be pickled")
    return _write_atomic(path, lambda fh: np.savez(fh, **arrays))
