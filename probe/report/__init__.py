"""What a run leaves behind and what is read back from it: the result record (one JSON per
run) and the paper tables built from result files and the published numbers.

May import `core` only; it reads results as files, never the stages that made them.
"""
