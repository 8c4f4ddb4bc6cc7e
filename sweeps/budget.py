"""A sweep's budget: a limit in money (`25usd`) or in GPU-hours (`6gpu-h`; `cpu-h` for CPU
trials) that the sweep never passes by more than one epoch of the trials it is running.

Two rules, both on measured time (an epoch's `epoch_time_s`, as the run folder counts spent):
- **Starting.** A new trial starts only if what has been spent, plus every live trial's
  remaining worst case (each to its last epoch), plus the new trial's own worst case, stays
  within the limit. A trial's epochs are priced at its own measured seconds per epoch, a trial
  that has measured none at the sweep's mean, and before any epoch at the plan's estimate.
- **Stopping.** Each running trial is committed to the epoch it is in. When a trial ends an
  epoch and what has been spent, plus one more epoch of it and one of every other running
  trial, would pass the limit, the budget is reached: that trial and then every other one, at
  the end of its epoch (its checkpoint written), pause, and no trial starts again. The sweep
  then ends as an interrupted one does, and `sweep resume RUN --budget ...` goes on.

The rules are plain Python, kept apart from Ray (sweeps.engine wires them into Tune's
searcher, scheduler and callbacks), so that a test can feed them hand-made reports.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from sweeps.errors import SweepError

UNITS = {"usd": "usd", "$": "usd", "gpu-h": "gpu-h", "gpuh": "gpu-h", "gpu-hours": "gpu-h",
         "cpu-h": "cpu-h", "cpuh": "cpu-h", "cpu-hours": "cpu-h"}
_BUDGET = re.compile(r"^\s*(\$)?\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z$-]*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class BudgetLimit:
    amount: float  # > 0
    unit: str  # usd | gpu-h | cpu-h

    def __str__(self) -> str:
        return f"{self.amount:g}{self.unit}"

    def hours(self, price_per_hour: float) -> float:
        """The limit in unit-hours (GPU-hours, or CPU-hours) at `price_per_hour`."""
        return self.amount / price_per_hour if self.unit == "usd" else self.amount

    @classmethod
    def read(cls, text: str, option: str = "--budget") -> BudgetLimit:
        """`text` ("25usd", "$25", "6gpu-h", "2cpu-h"), its form checked; SweepError (one line) otherwise."""
        match = _BUDGET.match(str(text))
        unit = ""
        if match:
            unit = "usd" if match.group(1) else UNITS.get(match.group(3).lower(), "?" if match.group(3) else "")
        if not match or unit in ("", "?"):
            raise SweepError(f"{option} {text}: give an amount and its unit, as 25usd, $25, 6gpu-h or 2cpu-h")
        amount = float(match.group(2))
        if not 0 < amount < math.inf:
            raise SweepError(f"{option} {text}: a budget must be above 0")
        return cls(amount, unit)

    def scaled(self, amount: float) -> BudgetLimit:
        """A limit in this one's unit of at least `amount`, rounded up to two figures."""
        digits = 1 - math.floor(math.log10(amount)) if amount > 0 else 0
        return BudgetLimit(math.ceil(amount * 10 ** digits) / 10 ** digits, self.unit)


def parse_budget(text: str, on_gpu: bool, price_per_hour: float, option: str = "--budget") -> BudgetLimit:
    """`text` as the limit of a sweep whose trials take GPUs (`on_gpu`) or not, at `price_per_hour`
    (0: none known); SweepError (one line) where it does not fit that sweep."""
    limit = BudgetLimit.read(text, option)
    own = "gpu-h" if on_gpu else "cpu-h"
    if limit.unit in ("gpu-h", "cpu-h") and limit.unit != own:
        raise SweepError(f"{option} {text}: this sweep's trials take {'GPUs' if on_gpu else 'no GPU'}; give the "
                         f"budget in {own} or usd")
    if limit.unit == "usd" and not price_per_hour:
        raise SweepError(f"{option} {text}: the sweep has no price to count money at; pass --price-per-hour (or "
                         f"--instance), or give the budget in {own}")
    return limit


@dataclass
class Meter:
    """Seconds of training measured: each epoch's `epoch_time_s` once, a restarted trial's
    replays of its stored epochs not at all (as `Run.trial_hours` counts them)."""
    seconds: float = 0.0
    epochs: int = 0

    def add(self, result: dict[str, Any]) -> bool:
        """Count `result`'s epoch if it is a trained one; True if it was."""
        seconds = result.get("epoch_time_s")
        if result.get("replayed") or result.get("failure") or not isinstance(seconds, (int, float)) \
                or seconds != seconds:
            return False
        self.seconds += float(seconds)
        self.epochs += 1
        return True

    @property
    def per_epoch(self) -> float | None:
        return self.seconds / self.epochs if self.epochs else None


@dataclass
class _Live:
    epochs: int = 0  # the newest epoch it reported (replays included)
    running: bool = False
    meter: Meter = field(default_factory=Meter)


@dataclass
class Ledger:
    """What a driver has spent and committed, and the two rules of the budget. `limit` is in
    unit-hours (0: no budget, and the rules never bind); `before` what earlier drivers of the
    run spent, measured."""
    limit: float
    units: float  # GPUs per trial, or CPUs where it takes none
    max_epochs: int
    estimate_epoch_s: float  # the plan's estimate of a trial-epoch, until one is measured
    before: float = 0.0
    # the epochs `before` holds, by trial: a resumed trial's replay of any other epoch stands for
    # one the killed driver trained but never wrote to the run folder, and counts as spent
    counted: dict[str, set[int]] = field(default_factory=dict)
    meter: Meter = field(default_factory=Meter)
    live: dict[str, _Live] = field(default_factory=dict)
    reached: bool = False  # the stopping rule fired: nothing starts again

    @property
    def spent(self) -> float:
        """Unit-hours spent, measured: earlier drivers' and this one's."""
        return self.before + self.meter.seconds * self.units / 3600

    def _epoch_s(self, trial_id: str | None = None) -> float:
        own = self.live[trial_id].meter.per_epoch if trial_id in self.live else None
        return own or self.meter.per_epoch or self.estimate_epoch_s

    def committed(self) -> float:
        """Unit-hours the live trials would still spend, each trained to its last epoch."""
        return sum(max(self.max_epochs - t.epochs, 0) * self._epoch_s(i) for i, t in self.live.items()) \
            * self.units / 3600

    def add(self, trial_id: str) -> None:
        self.live.setdefault(trial_id, _Live())

    def end(self, trial_id: str) -> None:
        self.live.pop(trial_id, None)

    def started(self, trial_id: str) -> None:
        self.add(trial_id)
        self.live[trial_id].running = True

    def paused(self, trial_id: str) -> None:
        if trial_id in self.live:
            self.live[trial_id].running = False

    def can_start(self) -> bool:
        """The starting rule, for a new trial."""
        if not self.limit:
            return True
        new = self.max_epochs * self._epoch_s() * self.units / 3600
        return not self.reached and self.spent + self.committed() + new <= self.limit

    def on_result(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Count a trial's report; True when the trial must pause after this epoch (the
        stopping rule: the budget is reached, now or before)."""
        self.started(trial_id)
        live = self.live[trial_id]
        epoch = int(result.get("epoch", 0) or 0)
        live.epochs = max(live.epochs, epoch)
        counted = live.meter.add(result)
        if counted:
            self.meter.add(result)
        elif result.get("replayed") and epoch not in self.counted.setdefault(trial_id, set()):
            self.counted[trial_id].add(epoch)
            seconds = result.get("epoch_time_s")
            if isinstance(seconds, (int, float)) and seconds == seconds:
                self.before += float(seconds) * self.units / 3600
        if not self.limit or not counted or live.epochs >= self.max_epochs:
            return False  # no budget, a replayed epoch, or its last one: it ends by itself
        if not self.reached:
            in_flight = sum(self._epoch_s(i) for i, t in self.live.items() if t.running) * self.units / 3600
            self.reached = self.spent + in_flight > self.limit
        return self.reached

    @property
    def running(self) -> int:
        return sum(t.running for t in self.live.values())
