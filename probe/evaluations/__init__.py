"""Evaluation protocols on cached features: the CLIP paper's linear probe (C search on val,
refit on train+val, test score), the protocol's splits and the metrics.

Knows arrays, not files: may import `core`, `datasets` (split definitions) and `solvers`.
"""
