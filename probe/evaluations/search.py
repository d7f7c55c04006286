"""How a protocol chooses C on val: grids of C values and the strategies that walk them.

A strategy never fits anything itself. It asks `score_at(points)` for the val scores of grid
indices (the caller fits each new point once, in the batches the strategy asks for, and
records it) and returns the chosen index. Every strategy breaks ties toward the smaller index,
that is the smaller C (stronger regularisation): the CLIP search by its rule, the sweep because
dinov2's and dinov3's `MetricTracker(maximize=True).best_metric` keeps the first maximum
(torch.max over the steps returns the first maximal index), and their grids ascend.

Protocol cards (`configs/protocol/*.yaml`) name a strategy with its grid through `_target_`;
adding a paper's new search means one class here, not a branch on a card's name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

ScoreAt = Callable[[list[int]], dict[int, float]]


def clip_grid(*, low: int = -6, high: int = 6, per_decade: int = 8) -> np.ndarray:
    """The CLIP paper's grid: 97 log-spaced values from 1e-6 to 1e6, 8 per decade."""
    steps = (high - low) * per_decade + 1
    return 10.0 ** (np.arange(steps) / float(per_decade) + low)


def torch_logspace(*, start: float, stop: float, num: int) -> np.ndarray:
    """`10 ** torch.linspace(start, stop, num)` exactly as dinov2 and dinov3 compute it: in
    float32 (torch's default dtype), each C then read back with `.item()` (facebookresearch/
    dinov2 `dinov2/eval/log_regression.py` lines 34 and 198-207 at b8931f7)."""
    import torch

    values = 10 ** torch.linspace(float(start), float(stop), int(num))
    return np.array([v.item() for v in values], dtype=np.float64)


def _first_best(points: Sequence[int], scores: dict[int, float]) -> int:
    """The best score among `points`, ties to the smaller index."""
    return max(sorted(points), key=lambda k: (scores[k], -k))


@dataclass(frozen=True)
class ClipBinary:
    """The CLIP paper's parametric binary search (appendix A.3): the `initial` indices, then
    around the best so far its neighbours at each half-width of `steps`."""

    grid: np.ndarray
    initial: tuple[int, ...]
    steps: tuple[int, ...]
    name: str = "clip_binary"

    @property
    def most_fits(self) -> int:
        """The fits the search can make: the first round and two new points per step."""
        return len(self.initial) + 2 * len(self.steps)

    def choose(self, score_at: ScoreAt) -> int:
        scores = dict(score_at(list(self.initial)))
        peak = _first_best(self.initial, scores)
        for step in self.steps:
            trio = [max(peak - step, 0), peak, min(peak + step, len(self.grid) - 1)]
            scores.update(score_at(trio))
            peak = _first_best(trio, scores)
        return peak


@dataclass(frozen=True)
class Sweep:
    """Every grid point, the first maximum kept (dinov2's and dinov3's `sweep_C_values`).

    Points are asked every `stride`-th first, then the rest in ascending batches of at most
    `batch` (the CLIP search's largest round, which bounds what a GPU stacks at once), so the
    solver warm-starts them between fitted neighbours; which C wins does not depend on it."""

    grid: np.ndarray
    stride: int = 8
    batch: int = 7
    name: str = "sweep"

    @property
    def most_fits(self) -> int:
        return len(self.grid)

    def choose(self, score_at: ScoreAt) -> int:
        every = list(range(len(self.grid)))
        first = every[:: self.stride]
        rest = [k for k in every if k not in set(first)]
        scores: dict[int, float] = {}
        for group in [first, *(rest[i : i + self.batch] for i in range(0, len(rest), self.batch))]:
            for i in range(0, len(group), self.batch):
                scores.update(score_at(group[i : i + self.batch]))
        return _first_best(every, scores)


@dataclass(frozen=True)
class Fixed:
    """One C, no search and no val (deepglint/unicom's linear-probe example: `C=0.601`)."""

    C: float
    name: str = "fixed"
    most_fits: int = 0

    @property
    def grid(self) -> np.ndarray:
        return np.array([float(self.C)])

    def choose(self, score_at: ScoreAt) -> int:
        return 0


def clip_binary(
    *, grid: np.ndarray | None = None, initial: Sequence[int] | None = None,
    steps: Sequence[int] = (8, 4, 2, 1),
) -> ClipBinary:  # fmt: skip
    """The CLIP search on `grid` (default: the CLIP grid, first round every 16th point)."""
    grid = clip_grid() if grid is None else np.asarray(grid, dtype=np.float64)
    initial = range(0, len(grid), 16) if initial is None else initial
    return ClipBinary(grid=grid, initial=tuple(int(k) for k in initial),
                      steps=tuple(int(s) for s in steps))  # fmt: skip


@dataclass(frozen=True)
class ClipBenchmarkPeak:
    """CLIP_benchmark's weight-decay search (LAION-AI/CLIP_benchmark @ 48de38c,
    `clip_benchmark/metrics/linear_probe.py` lines 128-139 and 266-278): `find_peak` over the
    `initial` indices, then over [peak - span, peak, peak + span] (clipped to the grid) with
    span 8, 4, 2, 1. `find_peak` keeps the first strictly better score in the order asked,
    starting from index 0 at score 0: ties go to the left point (the smaller weight decay),
    and if no point scores above 0 the choice is index 0."""

    grid: np.ndarray
    initial: tuple[int, ...]
    span: int = 8
    name: str = "clip_benchmark_peak"

    @property
    def most_fits(self) -> int:
        return len(self.initial) + 2 * max(0, int(self.span).bit_length())

    def choose(self, score_at: ScoreAt) -> int:
        peak = self._find_peak(list(self.initial), score_at)
        span = int(self.span)
        while span > 0:
            left, right = max(peak - span, 0), min(peak + span, len(self.grid) - 1)
            peak = self._find_peak([left, peak, right], score_at)
            span //= 2
        return peak

    @staticmethod
    def _find_peak(points: list[int], score_at: ScoreAt) -> int:
        scores = score_at(points)
        best, top = 0, 0.0
        for k in points:
            if top < scores[k]:
                best, top = k, scores[k]
        return best


def clip_benchmark_peak(
    *, grid: Sequence[float], initial: Sequence[float], span: int = 8
) -> ClipBenchmarkPeak:
    """The search on `grid` (`wd_list`, line 269) from the indices of the values of `initial`
    found in it by exact equality (`wd_init_idx`, lines 270-271: `val in wd_list_init`)."""
    values = np.asarray(grid, dtype=np.float64)
    wanted = set(np.asarray(initial, dtype=np.float64).tolist())
    first = tuple(i for i, v in enumerate(values.tolist()) if v in wanted)
    return ClipBenchmarkPeak(grid=values, initial=first, span=int(span))


Strategy = ClipBinary | Sweep | Fixed | ClipBenchmarkPeak
