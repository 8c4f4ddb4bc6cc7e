"""ASHA replayed over recorded learning curves, in seconds and without training.

Given the per-epoch metric of trials that each trained to the end (a sweep run without
early stopping), `replay` plays them through the same asynchronous successive halving as
Ray Tune's ASHAScheduler (one bracket): trials start in a given order, `concurrency` at a
time, each epoch taking its recorded time; when a trial reaches a rung (grace period x
reduction factor^k epochs) it is stopped if its value is below the (1 - 1/rf) quantile of the
values that rung has recorded so far, and its value is recorded. What comes out: the epochs
trained, and the best value seen, against training every trial to the end (FIFO). With several
objectives (`objectives`: the mode of each, the curves' `others` holding all but the first) the
rung decides by multi-objective ASHA's rule, the same code a real sweep runs
(`sweeps.stopping.ParetoRungs`), and the result holds the front the sweep ends with.

`many_orders` replays many random draws and orders of the recorded trials, so a (grace
period, reduction factor) pair can be judged by the spread of its outcomes, not one run.
Imports only numpy.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sweeps.stopping import ParetoRungs, fronts, rungs
from trainer.metrics import sign as metric_sign

__all__ = ["Curve", "Hypervolume", "ReplayResult", "asha", "many_orders", "pareto_points", "replay", "rungs",
           "trial_point"]


@dataclass
class Curve:
    values: list[float]  # the metric after each epoch, epoch 1 first
    seconds: list[float] | None = None  # each epoch's duration (None: one unit each)
    others: list[list[float]] = field(default_factory=list)  # each other objective after each epoch

    def point(self, epoch: int) -> list[float]:
        """Every objective after `epoch`, the metric first."""
        return [self.values[epoch - 1], *(o[epoch - 1] for o in self.others)]

    def duration(self, epoch: int) -> float:
        return 1.0 if self.seconds is None else float(self.seconds[epoch - 1])


@dataclass
class ReplayResult:
    epochs: int  # epochs trained in all
    fifo_epochs: int  # every trial to the end
    best: float  # best value seen in the epochs trained
    fifo_best: float  # best value over every epoch of every trial
    stopped: int  # trials stopped before the end
    front: list[list[float]] = field(default_factory=list)  # several objectives: the points of the sweep's front
    fifo_front: list[list[float]] = field(default_factory=list)  # and every trial trained to the end's

    @property
    def share(self) -> float:
        return self.epochs / self.fifo_epochs


def asha(propose: Callable[[], Curve | None], concurrency: int, grace_period: int, reduction_factor: float,
         max_t: int, mode: str = "max", finished: Callable[[int, int], None] | None = None,
         objectives: Sequence[str] = ()) -> list[int]:
    """The ASHA loop itself: trials come from `propose()` (None: no more), numbered in the order
    they start; a new one starts whenever a running one ends, `concurrency` at a time.
    `finished(trial, epochs)` is called as each ends (a searcher learns from it before the next
    `propose`). `objectives`: the mode of every objective where there are several (the rung rule
    is then sweeps.stopping's). Returns the epochs each trial trained, in start order."""
    sign = metric_sign(mode)
    milestones = rungs(grace_period, reduction_factor, max_t)
    pareto = ParetoRungs(milestones, reduction_factor, [metric_sign(m) for m in objectives]) \
        if len(objectives) > 1 else None
    recorded: dict[float, dict[int, float]] = {m: {} for m in milestones}  # rung -> trial -> value
    events: list[tuple[float, int, int]] = []  # (time, start order, epoch just finished)
    curves: list[Curve] = []
    trained: list[int] = []

    def start(now: float) -> None:
        curve = propose()
        if curve is not None:
            curves.append(curve)
            trained.append(0)
            heapq.heappush(events, (now + curve.duration(1), len(curves) - 1, 1))

    for _ in range(concurrency):
        start(0.0)
    while events:
        now, trial, epoch = heapq.heappop(events)
        trained[trial] = epoch
        reward = sign * curves[trial].values[epoch - 1]
        stop = epoch >= max_t
        if pareto is not None:  # a trial at its last epoch is not judged: Ray stops it first
            stop = stop or pareto.on_result(trial, epoch, curves[trial].point(epoch))
        for milestone in reversed(milestones) if pareto is None else ():  # Ray walks the rungs from the highest
            if epoch < milestone or trial in recorded[milestone]:
                continue
            values = list(recorded[milestone].values())
            if values and reward < np.nanpercentile(values, (1 - 1 / reduction_factor) * 100):
                stop = True
            recorded[milestone][trial] = reward
        if stop:
            if finished is not None:
                finished(trial, epoch)
            start(now)
        else:
            heapq.heappush(events, (now + curves[trial].duration(epoch + 1), trial, epoch + 1))
    return trained


def trial_point(curve: Curve, epochs: int, mode: str) -> list[float]:
    """A trial's point on the sweep's front, as the run reader makes it: its best value of the
    metric over the epochs it trained, and each other objective after its last."""
    best = (max if mode == "max" else min)(curve.values[:epochs])
    return [best, *(o[epochs - 1] for o in curve.others)]


def pareto_points(points: list[list[float]], objectives: Sequence[str]) -> list[list[float]]:
    """The points no other beats on every objective at once."""
    signed = np.array(points, dtype=float) * np.array([metric_sign(m) for m in objectives])
    return [p for p, front in zip(points, fronts(signed)) if front == 0]


class Hypervolume:
    """The hypervolume of two-objective fronts [(metric, cost)]: the area of the plane a front
    dominates, up to one reference point for every front of a recording (the worst value of the
    metric over every epoch of `curves`, and a little past their worst cost); the cost on a log10
    scale where it spans more than 20x, as parameters do."""

    def __init__(self, curves: Sequence[Curve], modes: Sequence[str]):
        self.signs = [metric_sign(m) for m in modes]
        costs = np.array([c.others[0][0] for c in curves], dtype=float)
        self.log = bool((costs > 0).all() and costs.max() / costs.min() > 20)
        metric = np.array([v for c in curves for v in c.values], dtype=float) * self.signs[0]
        cost = self._cost(costs)
        self.ref = (float(np.nanmin(metric)), float(cost.min() - 0.05 * ((cost.max() - cost.min()) or 1.0)))

    def _cost(self, cost):
        cost = np.asarray(cost, dtype=float)
        return self.signs[1] * (np.log10(cost) if self.log else cost)

    def __call__(self, front: Sequence[Sequence[float]]) -> float:
        # larger is better on both: from the best cost down, each point adds the strip its metric climbs by
        points = sorted(((float(self._cost(c)), self.signs[0] * v) for v, c in front), reverse=True)
        area, best = 0.0, self.ref[0]
        for cost, value in points:
            if value > best:
                area += (cost - self.ref[1]) * (value - best)
                best = value
        return area


def replay(curves: list[Curve], concurrency: int, grace_period: int, reduction_factor: float,
           mode: str = "max", objectives: Sequence[str] = (), rank_all: bool = True) -> ReplayResult:
    """ASHA over `curves`, started in list order, `concurrency` at a time. With several
    `objectives` (their modes, the first `mode`) the result holds the fronts, and the rungs rank
    them all (multi-objective ASHA) or, `rank_all` off, the first alone (Ray's ASHA)."""
    max_t = min(len(c.values) for c in curves)
    queue = iter(curves)
    trained = asha(lambda: next(queue, None), concurrency, grace_period, reduction_factor, max_t, mode,
                   objectives=objectives if rank_all else ())
    seen = [v for c, n in zip(curves, trained) for v in c.values[:n]]
    every = [v for c in curves for v in c.values[:max_t]]
    pick = max if mode == "max" else min
    front, fifo_front = [], []
    if len(objectives) > 1:
        front = pareto_points([trial_point(c, n, mode) for c, n in zip(curves, trained)], objectives)
        fifo_front = pareto_points([trial_point(c, max_t, mode) for c in curves], objectives)
    return ReplayResult(epochs=sum(trained), fifo_epochs=max_t * len(curves), best=pick(seen), fifo_best=pick(every),
                        stopped=sum(1 for n in trained if n < max_t), front=front, fifo_front=fifo_front)


def many_orders(pool: list[Curve], trials: int, concurrency: int, grace_period: int, reduction_factor: float,
                orders: int, seed: int = 0, mode: str = "max", objectives: Sequence[str] = (),
                rank_all: bool = True) -> list[ReplayResult]:
    """`orders` replays, each of `trials` curves drawn from `pool` (without replacement) in a
    random order; FIFO is judged on the same draw."""
    rng = np.random.default_rng(seed)
    outcomes = []
    for _ in range(orders):
        drawn = [pool[i] for i in rng.choice(len(pool), size=min(trials, len(pool)), replace=False)]
        outcomes.append(replay(drawn, concurrency, grace_period, reduction_factor, mode, objectives, rank_all))
    return outcomes
