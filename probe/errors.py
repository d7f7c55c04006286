"""The one exception type for mistakes a user can fix.

`python -m probe` catches it once and prints its message without a traceback; every other
exception keeps its traceback because it is our bug, not the user's.
"""


class ProbeError(Exception):
    """A user-fixable problem: a bad value, a missing file, an unknown name."""
