"""Running grids of runs: a grid config expanded into `python -m probe` task lines, checked
against the real configs, and the SLURM array command that runs them, with the resources the
runs need (`resources`).

May import `core` and `report` (to know where each run's result lands).
"""
