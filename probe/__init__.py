"""probe: a linear-probe benchmarking harness for frozen vision encoders.

The packages are the pipeline's stages, and data flows one way through them:
`encoders` and `datasets` -> `features` (the cache) -> `solvers` and `evaluations` ->
`report` (results and tables); `launch` plans grids of runs; `core` is what all share.
The entry points sit on top: `__main__` (`python -m probe`, through `run`), `grid`,
`table`, `convert` and `bench`. Nothing in a stage package imports an entry point or `run`.
"""

__version__ = "0.1.0"
