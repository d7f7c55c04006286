"""SIGTERM as a clean stop: what SLURM sends when it cancels, preempts, requeues or times out.

SLURM ends a job's processes with SIGCONT and SIGTERM, then SIGKILL once `KillWait` seconds
(slurm.conf, default 30, at least 5) have passed; preemption, `scontrol requeue` and the time
limit go the same way. `python -m probe` turns that SIGTERM into `Preempted`:

- While a cache entry's rows are being written (inside `deferred`) the signal only sets a
  flag; extraction calls `checkpoint` after each recorded shard and stops there, so every
  recorded shard is whole and a rerun resumes from it.
- Anywhere else (loading a model, the probe's search, writing the result) it raises at once:
  every file is written through `probe.core.io`'s atomic helpers, so nothing half-done remains.

`exit_on_preemption` logs the stop and exits with `EXIT_CODE` (143 = 128 + SIGTERM, what a
shell reports for a process ended by SIGTERM), so SLURM counts the task as failed and an
`aftercorr` dependency never starts the probe of an extraction that did not finish.
Forked DataLoader workers inherit the handler and ignore the signal: the main process shuts
them down when it stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

EXIT_CODE = 128 + int(signal.SIGTERM)
_state: dict[str, Any] = {"pid": None, "requested": False, "defer": 0}


class Preempted(BaseException):  # noqa: N818 - a stop, like KeyboardInterrupt, not an error
    """SIGTERM arrived. A BaseException, so that no `except Exception` swallows the stop."""


def _handler(signum: int, _frame: Any) -> None:
    if os.getpid() != _state["pid"]:  # a forked DataLoader worker: the main process decides
        return
    first = not _state["requested"]  # a second SIGTERM must not interrupt the unwinding
    _state["requested"] = True
    if first and not _state["defer"]:
        raise Preempted(f"{signal.Signals(signum).name} received")


def requested() -> bool:
    return bool(_state["requested"]) and os.getpid() == _state["pid"]


def checkpoint(where: str) -> None:
    """A safe place to stop: raise `Preempted(where)` if SIGTERM has arrived."""
    if requested():
        raise Preempted(where)


@contextlib.contextmanager
def deferred(what: str) -> Iterator[None]:
    """Within: SIGTERM only sets the flag (the code checkpoints); after: stop if it came."""
    _state["defer"] += 1
    try:
        yield
    finally:
        _state["defer"] -= 1
    checkpoint(f"stopped after {what}")


@contextlib.contextmanager
def exit_on_preemption(log: logging.Logger) -> Iterator[None]:
    """The CLI's side: install the handler, and on `Preempted` log it and exit `EXIT_CODE`."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, _handler)
    _state.update(pid=os.getpid(), requested=False, defer=0)
    try:
        yield
    except Preempted as stop:
        log.warning(
            "preempted (SIGTERM): %s; recorded shards are kept and nothing half-written is: "
            "rerun the same command to resume (exit %d)",
            stop, EXIT_CODE,
        )  # fmt: skip
        sys.exit(EXIT_CODE)
    finally:
        signal.signal(signal.SIGTERM, previous)
        _state.update(pid=None, requested=False, defer=0)
