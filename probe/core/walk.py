"""Directory walks that always end and list each file once, whatever links the tree holds.

Every recursive listing in the project goes through `walk_files` (the image-folder reader, the
stamp of a local model directory). What a symlink means there:

- A link to a folder is followed once. A folder is identified by what it is (device and
  inode), not by the name it is reached through: a link to `.`, `..` or any folder above the
  walk's start is a loop and is skipped, and a second way into a folder already walked (a
  second link, or the real folder after a link to it) is skipped too. `os.walk(followlinks=
  True)` instead walks a link to `.` until the path is too long, and two such links forever.
- A link to a file is listed under its own name (the name is what a sample id records), but
  each real file (device, inode: a second hard link is the same file) is listed once, under
  the first name the walk reaches it by.
- A dangling link is listed (reading it then fails with the file's name, as any unreadable
  image does); with `regular=True` a FIFO, socket or device is refused, since opening one to
  read an image could block forever.

The order is os.walk's (a folder's files sorted by name, then its sub-folders sorted, depth
first), so sample ids and their order do not change for trees without links.
"""

from __future__ import annotations

import logging
import os
import stat
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probe.core.errors import ProbeError

log = logging.getLogger(__name__)
Identity = tuple[int, int]  # (st_dev, st_ino): a file or folder, whatever its name


@dataclass
class Walked:
    """What one walk found: files (as reached), their identities, and what it stepped over."""

    files: list[str] = field(default_factory=list)
    devs: array = field(default_factory=lambda: array("Q"))  # each file's device and inode,
    inos: array = field(default_factory=lambda: array("Q"))  # 16 bytes a file (ImageNet: 20 MB)
    loops: list[str] = field(default_factory=list)  # folder links not followed
    repeats: list[tuple[str, str]] = field(default_factory=list)  # (name skipped, name kept)

    def identities(self) -> np.ndarray:
        """(n, 2) uint64: each file's (device, inode), in the order of `files`."""
        devs = np.frombuffer(self.devs, dtype=np.uint64)
        return np.stack([devs, np.frombuffer(self.inos, dtype=np.uint64)], axis=1).reshape(-1, 2)


def identity(path: str | Path) -> Identity:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def above(root: str | Path) -> set[Identity]:
    """The identities of `root`'s real folder and of every folder above it."""
    out, here = set(), Path(os.path.realpath(root))
    for folder in (here, *here.parents):
        try:
            out.add(identity(folder))
        except OSError:
            continue
    return out


def _file_identity(entry: os.DirEntry, dev: int, *, regular: bool) -> Identity:
    """A file entry's identity (free for a plain file: scandir gave its inode)."""
    if not entry.is_symlink():
        if regular and not entry.is_file():
            raise ProbeError(
                f"{entry.path} is not a regular file (a FIFO, socket or device); reading it "
                "could block forever. Remove it from the folder"
            )
        return dev, entry.inode()
    try:
        st = os.stat(entry.path)
    except OSError:  # dangling: listed, and reading it names it
        st = entry.stat(follow_symlinks=False)
        return st.st_dev, st.st_ino
    if regular and not stat.S_ISREG(st.st_mode):
        raise ProbeError(
            f"{entry.path} links to something that is not a regular file (a FIFO, socket or "
            "device); reading it could block forever. Remove the link"
        )
    return st.st_dev, st.st_ino


def _entries(folder: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as err:
        raise ProbeError(
            f"cannot list folder {folder} ({err.strerror or err}); make it readable or remove it"
        ) from err


def walk_files(
    root: str | Path, *, keep: Callable[[str], bool] | None = None, regular: bool = False
) -> Walked:
    """Files below `root` (paths joined from `root` as given) whose name passes `keep`."""
    root = os.fspath(root)
    seen_dirs = above(root)
    seen_files: dict[Identity, str] = {}
    out = Walked()
    stack = [(root, os.stat(root).st_dev)]
    while stack:
        folder, dev = stack.pop()
        subdirs = []
        for entry in _entries(folder):
            if entry.is_dir():
                try:
                    st = entry.stat()
                except OSError:
                    continue  # vanished meanwhile
                if (st.st_dev, st.st_ino) in seen_dirs:
                    out.loops.append(entry.path)
                    continue
                seen_dirs.add((st.st_dev, st.st_ino))
                subdirs.append((entry.path, st.st_dev))
            elif keep is None or keep(entry.name):
                ident = _file_identity(entry, dev, regular=regular)
                if ident in seen_files:
                    out.repeats.append((entry.path, seen_files[ident]))
                    continue
                seen_files[ident] = entry.path
                out.files.append(entry.path)
                out.devs.append(ident[0])
                out.inos.append(ident[1])
        stack.extend(reversed(subdirs))
    return out


def repeated(ids: np.ndarray) -> list[tuple[int, int]]:
    """(later, first) index pairs: each row of `ids` (device, inode) equal to an earlier row."""
    rows = np.ascontiguousarray(ids, dtype=np.uint64).view([("dev", "<u8"), ("ino", "<u8")])
    _, first, inverse = np.unique(rows.ravel(), return_index=True, return_inverse=True)
    firsts = first[inverse.ravel()]
    return [(int(i), int(firsts[i])) for i in np.flatnonzero(firsts != np.arange(len(firsts)))]
