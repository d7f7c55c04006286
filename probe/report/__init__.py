"""What a run leaves behind and what is read back from it: the result record (one JSON per
run), the head beside it, and the tables built from result files and the published numbers.

May import `core` and the pure functions of `evaluations` (metrics, the bootstrap) to re-score
saved predictions; it reads results as files, never running the stages that made them.
"""
