"""SIGTERM as a clean stop (what SLURM sends when it cancels, preempts, requeues or times
out), and Ctrl-C's SIGINT the same way.

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
them down when it stops. Ctrl-C (SIGINT, which a terminal sends to the workers too) is
handled alike, without a traceback, and exits 130 (128 + SIGINT).
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
# Ctrl-C stops a run the same way (no traceback, nothing half-written left as finished),
# exiting 130 = 128 + SIGINT as a shell reports it
SIGNALS = (signal.SIGTERM, signal.SIGINT)
_state: dict[str, Any] = {"pid": None, "requested": False, "defer": 0, "signum": None}


class Preempted(BaseException):  # noqa: N818 - a stop, like KeyboardInterrupt, not an error
    """SIGTERM arrived. A BaseException, so that no `except Exception` swallows the stop."""


def _handler(signum: int, _frame: Any) -> None:
    if os.getpid() != _state["pid"]:  # a forked DataLoader worker: the main process decides
        return
    first = not _state["requested"]  # a second signal must not interrupt the unwinding
    _state["requested"] = True
    _state["signum"] = _state["signum"] or signum
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
    """The CLI's side: install the handler (SIGTERM and SIGINT), and on `Preempted` log it
    and exit 128 + the signal's number (`EXIT_CODE` for SIGTERM, 130 for Ctrl-C)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = {sig: signal.signal(sig, _handler) for sig in SIGNALS}
    _state.update(pid=os.getpid(), requested=False, defer=0, signum=None)
    try:
        yield
    except Preempted as stop:
        signum = _state["signum"] or signal.SIGTERM
        what = "interrupted" if signum == signal.SIGINT else "preempted"
        log.warning(
            "%s (%s): %s; recorded shards are kept and nothing half-written is: rerun the same "
            "command to resume (exit %d)",
            what, signal.Signals(signum).name, stop, 128 + int(signum),
        )  # fmt: skip
        sys.exit(128 + int(signum))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _state.update(pid=None, requested=False, defer=0, signum=None)
