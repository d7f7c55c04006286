"""`python -m probe.bench solvers|extract`: benchmarks that print ratios measured side by side
in one run (never timed asserts). An entry point: may import any stage."""
