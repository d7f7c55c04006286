"""The one exception type for mistakes a user can fix.

`python -m probe` catches it once and prints its message without a traceback; every other
exception keeps its traceback because it is our bug, not the user's.
"""

import contextlib
import logging
import sys
from collections.abc import Iterator


class ProbeError(Exception):
    """A user-fixable problem: a bad value, a missing file, an unknown name."""

    def __str__(self) -> str:
        # A DataLoader worker's error comes back as ProbeError("Caught ProbeError in DataLoader
        # worker process N.\nOriginal Traceback ...: MESSAGE"): show the user only MESSAGE.
        text = super().__str__()
        marker = f"{__name__}.ProbeError: "
        if text.startswith("Caught ProbeError") and marker in text:
            return text.rsplit(marker, 1)[1].strip()
        return text


@contextlib.contextmanager
def exit_on_probe_error(log: logging.Logger) -> Iterator[None]:
    """The command-line contract of every `python -m probe...` app: a ProbeError is logged
    as one line and the process exits with status 2; anything else keeps its traceback."""
    try:
        yield
    except ProbeError as err:
        log.error("%s", err)
        sys.exit(2)
