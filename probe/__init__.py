"""probe: a linear-probe benchmarking harness for frozen vision encoders.

The packages are the pipeline's stages, and data flows one way through them:
`encoders` and `datasets` -> `features` (the cache) -> `solvers` and `evaluations` ->
`report` (results and tables); `launch` plans grids of runs; `core` is what all share.
The entry points sit on top: `__main__` (`python -m probe`, through `run`), `api` (the
Python API exported here), `grid`, `table`, `convert` and `bench`. Nothing in a stage
package imports an entry point or `run`.

The Python API is imported on first use, so `import probe` stays light:
`from probe import LinearProbe, linear_probe, fewshot_probe, knn_probe, load_results,
model_index`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
_API = {
    "LinearProbe": "probe.api",
    "linear_probe": "probe.api",
    "fewshot_probe": "probe.api",
    "knn_probe": "probe.api",
    "load_results": "probe.api",
    "model_index": "probe.api",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'probe' has no attribute {name!r}")
