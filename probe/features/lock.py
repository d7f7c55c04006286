"""An exclusive lock per cache entry, so two jobs never fill the same directory at once.

The lock is `flock(2)` on a hidden `.{entry}.lock` file next to the entry: the kernel drops it the
moment its holder dies (SIGKILL, OOM killer, node reboot of a local disk), so a dead job never
leaves a stale lock behind. The holder writes `pid hostname` into the file so a waiter can say
who it waits for. On NFS, Linux maps flock onto NFS byte-range locks (lockd / NFSv4), which
work across nodes; where the filesystem refuses locks (ENOLCK, EOPNOTSUPP) we fall back to an
exclusive-create lock file whose owner is checked by pid on the same host (a dead pid's file
is removed) and reported by host otherwise.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import time
from pathlib import Path

from probe.core.errors import ProbeError
from probe.core.io import pid_alive

log = logging.getLogger(__name__)
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


def _owner() -> str:
    return f"{os.getpid()} {socket.gethostname()}"


def _read_owner(path: Path) -> tuple[int | None, str]:
    try:
        pid, _, host = path.read_text().strip().partition(" ")
        return int(pid), host
    except (OSError, ValueError):
        return None, "?"


class EntryLock:
    """`with EntryLock(path, timeout=s):` waits up to `timeout` seconds (None: forever)."""

    def __init__(self, path: str | Path, *, timeout: float | None = 3600.0, poll: float = 0.2):
        self.path = Path(path)
        self.timeout = timeout
        self.poll = poll
        self._fd: int | None = None
        self._excl = False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        start, announced = time.monotonic(), False
        while not self._try_once():
            pid, host = _read_owner(self.path)
            if not announced:
                log.warning(
                    "%s is locked by pid %s on %s (another job is filling this cache entry); "
                    "waiting up to %ss",
                    self.path, pid, host, self.timeout,
                )  # fmt: skip
                announced = True
            if self.timeout is not None and time.monotonic() - start >= self.timeout:
                raise ProbeError(
                    f"timed out after {self.timeout}s waiting for the lock {self.path}, held by "
                    f"pid {pid} on host {host}; wait for that job, raise extract.lock_timeout, or "
                    "delete the lock file if that job is certainly dead"
                )
            time.sleep(self.poll)

    def _try_once(self) -> bool:
        if self._excl:
            return self._try_exclusive_create()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in _NO_FLOCK:
                log.warning("%s: no flock on this filesystem; using a lock file", self.path)
                self._excl = True
                return self._try_exclusive_create()
            if err.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        os.ftruncate(fd, 0)
        os.write(fd, _owner().encode())
        os.fsync(fd)
        self._fd = fd
        return True

    def _try_exclusive_create(self) -> bool:
        excl = self.path.with_name(self.path.name + ".excl")
        try:
            fd = os.open(excl, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pid, host = _read_owner(excl)
            if host == socket.gethostname() and pid is not None and not pid_alive(pid):
                log.warning("removing stale lock %s of dead pid %d", excl, pid)
                excl.unlink(missing_ok=True)
            return False
        os.write(fd, _owner().encode())
        os.fsync(fd)
        os.close(fd)
        self.path.write_text(_owner())
        return True

    def release(self) -> None:
        if self._excl:
            self.path.with_name(self.path.name + ".excl").unlink(missing_ok=True)
        elif self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
        self._fd = None

    def __enter__(self) -> EntryLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
