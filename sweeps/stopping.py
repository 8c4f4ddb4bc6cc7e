"""Early stopping that sees every objective: multi-objective ASHA's rule at a rung.

ASHA (one bracket, as Ray Tune's ASHAScheduler runs it) records a trial's result at each rung
(grace period x reduction factor^k epochs) and lets it go on only if it is among the best
1/reduction-factor of the trials that reached that rung. With several objectives "best" is a
ranking of points, not of numbers; here it is NSGA-II's (non-dominated sorting, and inside a
front the crowding distance):

1. the points recorded at the rung, this trial's among them, are sorted into fronts: front 0
   is the points no other beats on every objective at once, front 1 those that only front 0
   beats, and so on;
2. inside a front, a point with a larger crowding distance (the normalised size of the box its
   neighbours on the front span, summed over the objectives; a front's end on any objective is
   infinitely far) ranks higher: it covers a part of the front the others do not;
3. the trial goes on if fewer than ceil(n / reduction factor) of the n points rank strictly
   above it. Ties go on, as in Ray's ASHA (it stops a trial only strictly below its cutoff): so
   the trial best on any single objective at its rung always goes on.

With one objective this is ASHA with a rank cutoff in place of Ray's interpolated quantile.
Cost objectives that do not change with training (params, GFLOPs, latency measured with the
first epoch) are in every report, so they count from the first rung.

`ParetoRungs` is the one implementation: the Tune scheduler (sweeps.engine.schedulers) and the
replay over recorded curves (sweeps.sim.asha) both call it. Imports numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np

# what a preset's `sweep.early_stopping` may say where it has several objectives
ALL_OBJECTIVES = "all-objectives"  # this module's rule (the default)
FIRST_OBJECTIVE = "first-objective"  # Ray's ASHA on the first objective alone (resweep before 2026-12)
RULES = (ALL_OBJECTIVES, FIRST_OBJECTIVE)


def rungs(grace_period: int, reduction_factor: float, max_t: int) -> list[float]:
    """The rung milestones of Ray's ASHA (one bracket), lowest first."""
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return [grace_period * reduction_factor ** k for k in range(count)]


def fronts(points: np.ndarray) -> np.ndarray:
    """The front index of each row of `points` (n x objectives, larger better): 0 for the
    non-dominated, 1 for those only front 0 dominates, ... A NaN counts as the worst value.
    Every pair compared at once (the driver calls this on each rung report of a large sweep)."""
    points = np.where(np.isnan(points), -np.inf, points)
    # beats[j, i]: row j at least as good as row i everywhere and better somewhere
    beats = np.logical_and(np.all(points[:, None, :] >= points[None, :, :], axis=-1),
                           np.any(points[:, None, :] > points[None, :, :], axis=-1))
    front = np.full(len(points), -1)
    level = 0
    while (front < 0).any():
        left = front < 0
        current = left & ~beats[left].any(axis=0)  # beaten by none of those still unplaced
        front[current] = level
        level += 1
    return front


def crowding(points: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each row of `points` (one front): per objective, the gap
    between a point's two neighbours over the front's range, summed; the ends are infinite."""
    points = np.where(np.isnan(points), -np.inf, points)
    n, m = points.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, math.inf)
    for k in range(m):
        order = np.argsort(points[:, k], kind="stable")
        low, high = points[order[0], k], points[order[-1], k]
        distance[order[0]] = distance[order[-1]] = math.inf
        if not np.isfinite(high - low) or high == low:
            continue  # every point alike here (or an infinite end): this objective spreads none of them
        for rank in range(1, n - 1):
            distance[order[rank]] += (points[order[rank + 1], k] - points[order[rank - 1], k]) / (high - low)
    return distance


def ranked_above(points: np.ndarray, index: int) -> int:
    """How many rows of `points` rank strictly above row `index`: in a better front, or in its
    front at a larger crowding distance."""
    front = fronts(points)
    mine = front[index]
    members = np.flatnonzero(front == mine)
    distance = dict(zip(members, crowding(points[members])))
    return int((front < mine).sum()) + sum(1 for j in members if distance[j] > distance[index])


def goes_on(points: np.ndarray, index: int, reduction_factor: float) -> bool:
    """Whether row `index` of the points recorded at a rung is among its best 1/reduction-factor."""
    return ranked_above(points, index) < math.ceil(len(points) / reduction_factor)


class ParetoRungs:
    """Multi-objective ASHA's bookkeeping, one bracket: the point each trial had at each rung it
    reached. `signs` turn the objectives into larger-is-better (+1 for max, -1 for min)."""

    def __init__(self, milestones: Sequence[float], reduction_factor: float, signs: Sequence[float]):
        self.milestones = sorted(milestones, reverse=True)  # walked from the highest, as Ray's bracket does
        self.reduction_factor = reduction_factor
        self.signs = np.asarray(signs, dtype=float)
        self.recorded: dict[float, dict[Hashable, np.ndarray]] = {m: {} for m in self.milestones}

    def on_result(self, trial: Hashable, epoch: int, values: Sequence[float], judge: bool = True) -> bool:
        """Record `values` (the objectives, as reported) of `trial` after `epoch`; True: stop it
        here. A trial is judged once per rung, at the first report that reaches it; `judge` off
        records without judging (the epochs a resumed trial replays: it was let go on then)."""
        for milestone in self.milestones:
            if epoch < milestone:
                continue
            rung = self.recorded[milestone]
            if trial in rung:
                return False  # judged at this rung already, and let go on
            rung[trial] = self.signs * np.asarray(values, dtype=float)
            if not judge:
                return False
            order = list(rung)
            return not goes_on(np.array([rung[t] for t in order]), order.index(trial), self.reduction_factor)
        return False
