"""Paper tables from result JSONs: `python -m probe.table table=NAME` (see probe/table.py)."""
