"""Building things from config nodes: the config groups are the registry.

Each encoder, dataset and probe config names its family's builder in `_target_`; Hydra's
`instantiate` calls it with the config's keys. Hydra wraps any exception raised inside a
builder; a user mistake (`ProbeError`) is unwrapped here so it still prints as one clean line.
"""

from __future__ import annotations

from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate

from probe.core.errors import ProbeError


def make(node: Any, **kwargs: Any) -> Any:
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, ProbeError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise
