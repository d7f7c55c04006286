"""Running grids of runs: a grid config expanded into `python -m probe` task lines, checked
against the real configs, and the SLURM array command that runs them, with the resources the
runs need (`resources`).

May import `core`, `report` (to know where each run's result lands) and `solvers` (the
probe stage's memory estimate, `solvers.memory`, to size each run: `sizes`).
"""
