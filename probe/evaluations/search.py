"""How C is searched over a grid, as pure strategies: which grid points to score, which wins.

A strategy knows grid indices and scores, nothing of fits: `score_at(points)` fits and
scores the given indices (each strategy passes only indices it has not asked for before,
ascending) and returns their val scores. Both return the chosen index; ties go to the
smaller index (the smaller C: stronger regularisation, README "Where we differ").

- `clip_binary`: the CLIP paper's parametric binary search (appendix A.3; docs/protocol.md
  section 2): the `initial` points, then around the best so far its neighbours at each of
  `steps` (8, 4, 2, 1 grid points on the 97-point grid).
- `full_sweep`: every point of the grid (dinov2's and dinov3's sweep over their 45 values).

A minimal copy of the interface issue 25's protocol cards use; the multi-label evaluation
(`probe.evaluations.multilabel`) searches through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

ScoreAt = Callable[[list[int]], dict[int, float]]


class _Scores:
    """The scores asked for so far; asks `score_at` only for new points, ascending."""

    def __init__(self, score_at: ScoreAt) -> None:
        self.score_at = score_at
        self.known: dict[int, float] = {}

    def ask(self, points: Sequence[int]) -> None:
        new = sorted({int(k) for k in points} - set(self.known))
        if new:
            got = self.score_at(new)
            self.known.update({k: float(got[k]) for k in new})

    def best(self, points: Sequence[int]) -> int:
        """The best of `points` (all asked already), ties to the smaller index."""
        return max(sorted(set(points)), key=lambda k: (self.known[k], -k))


def clip_binary(
    score_at: ScoreAt, *, size: int, initial: Sequence[int], steps: Sequence[int]
) -> int:
    """The CLIP search: `initial`, then the best and its neighbours at +-step, per step."""
    scores = _Scores(score_at)
    scores.ask(initial)
    peak = scores.best(initial)
    for step in steps:
        trio = [max(peak - step, 0), peak, min(peak + step, size - 1)]
        scores.ask(trio)
        peak = scores.best(trio)
    return peak


def full_sweep(score_at: ScoreAt, *, size: int) -> int:
    """Every grid point scored; the best wins."""
    scores = _Scores(score_at)
    scores.ask(range(size))
    return scores.best(range(size))
