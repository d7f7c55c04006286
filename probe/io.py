"""Atomic file writes for generated artefacts (tables, plots, task files).

Same pattern as `probe.cache.write_json_atomic`: a temp file in the target directory, fsync,
rename. A reader (or a job array started while a table is rewritten) sees the old file or the
new one, never half of one.
"""

from __future__ import annotations

import os
from pathlib import Path

from probe.cache import fsync_dir
from probe.errors import ProbeError


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ProbeError(f"could not create {path.parent}: {err.strerror or err}") from err
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ProbeError(f"could not write {path}: {err.strerror or err}") from err
    fsync_dir(path.parent)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))
