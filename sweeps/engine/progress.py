"""How far along a running sweep is, in one line: trials done, stopped early, errored and
running of the total, the best metric so far and its trial, time spent and an estimate of
time left. On a terminal the line updates in place (rich); elsewhere (CI, `ray exec`, a log
file) a plain line is printed at most every 30 s, and when a finished trial is the best so
far.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from ray.tune import Callback

from sweeps.budget import Ledger, Meter
from sweeps.prices import usd
from sweeps.runfolder.run import epochs_left
from sweeps.runfolder.storage import current_outage

PLAIN_EVERY_S = 30.0
LIVE_EVERY_S = 0.25  # rich redraws 4 times a second


def clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class SweepProgress:
    """The counts and estimates behind the line, from Tune's trials (kept apart from the
    callback so that a test can feed it)."""

    def __init__(self, metric: str, mode: str, total: int, max_epochs: int, price_per_hour: float = 0.0,
                 units: float = 1.0, hours_before: float = 0.0, budget_hours: float = 0.0,
                 ledger: Ledger | None = None):
        self.metric, self.mode, self.total, self.max_epochs = metric, mode, total, max_epochs
        self.ledger = ledger  # the driver's budget ledger: where there is one, its spent is the line's
        # money: the price of a unit-hour (0: none known), a trial's units (GPUs, or CPUs), the
        # unit-hours spent before this driver (a resumed sweep's earlier drivers), the budget (0: none)
        self.price_per_hour, self.units, self.hours_before = price_per_hour, units, hours_before
        self.budget_hours = budget_hours
        self.meter = Meter()  # epochs trained since this driver started, measured (replays excluded)
        self.started = time.monotonic()
        self.best: tuple[float, str] | None = None  # over every reported epoch
        self.best_finished: tuple[float, str] | None = None  # over trials that ended
        self.trial_best: dict[str, float] = {}
        self.epochs_trained = 0  # since this driver started: the rate of the estimate

    def better(self, value: float, than: tuple[float, str] | None) -> bool:
        return than is None or (value > than[0] if self.mode == "max" else value < than[0])

    def on_result(self, trial_id: str, result: dict[str, Any]) -> None:
        value = result.get(self.metric)
        if result.get("failure") or not isinstance(value, (int, float)):
            return
        if not result.get("replayed"):
            self.epochs_trained += 1
            self.meter.add(result)
        if trial_id not in self.trial_best or self.better(value, (self.trial_best[trial_id], "")):
            self.trial_best[trial_id] = float(value)
        if self.better(value, self.best):
            self.best = (float(value), trial_id)

    def on_finished(self, trial_id: str) -> bool:
        """True when the trial that ended is the best of the ended ones so far."""
        value = self.trial_best.get(trial_id)
        if value is not None and self.better(value, self.best_finished):
            self.best_finished = (value, trial_id)
            return True
        return False

    def counts(self, trials) -> dict[str, int]:
        counts = {"done": 0, "stopped early": 0, "errored": 0, "running": 0, "pending": 0}
        for trial in trials:
            last = trial.last_result or {}
            if trial.status == "TERMINATED":
                ended = last.get("failure") or int(last.get("epoch", 0) or 0) >= self.max_epochs
                counts["done" if ended else "stopped early"] += 1
            elif trial.status == "ERROR":
                counts["errored"] += 1
            elif trial.status == "RUNNING":
                counts["running"] += 1
            else:
                counts["pending"] += 1
        counts["pending"] += max(0, self.total - len(trials))
        return counts

    def epochs_left(self, trials, counts: dict[str, int]) -> float:
        """Epochs still to train: a finished trial's mean for each trial to come."""
        ended = [int((t.last_result or {}).get("epoch", 0) or 0) for t in trials if t.status in ("TERMINATED", "ERROR")]
        running = [int((t.last_result or {}).get("epoch", 0) or 0) for t in trials if t.status == "RUNNING"]
        return epochs_left(ended, running, counts["pending"], self.max_epochs)

    def seconds_left(self, trials, counts: dict[str, int]) -> float | None:
        """The epochs left at the rate of this driver's epochs so far."""
        elapsed = time.monotonic() - self.started
        if self.epochs_trained < 2 or elapsed <= 0:
            return None
        return self.epochs_left(trials, counts) * elapsed / self.epochs_trained

    def money(self, trials, counts: dict[str, int]) -> tuple[float, float | None] | None:
        """(spent, forecast at the end) at the plan's price: measured epoch seconds x units x
        price, and the epochs left at this driver's measured seconds per epoch; None without a price."""
        if not self.price_per_hour:
            return None
        per_hour = self.price_per_hour * self.units
        spent = self.spent_hours * self.price_per_hour
        if not self.epochs_trained:
            return spent, None
        left_s = self.epochs_left(trials, counts) * self.meter.seconds / self.epochs_trained
        return spent, spent + left_s * per_hour / 3600

    @property
    def spent_hours(self) -> float:
        if self.ledger is not None:
            return self.ledger.spent
        return self.hours_before + self.meter.seconds * self.units / 3600

    def line(self, trials) -> str:
        counts = self.counts(trials)
        ended = counts["done"] + counts["stopped early"] + counts["errored"]
        text = (f"[{clock(time.monotonic() - self.started)}] {ended}/{self.total} trials: {counts['done']} done, "
                f"{counts['stopped early']} stopped early, {counts['errored']} errored, {counts['running']} running")
        if self.best:
            text += f" | best {self.metric} {self.best[0]:.4f} ({self.best[1]})"
        left = self.seconds_left(trials, counts)
        if left is not None and ended < self.total:
            text += f" | ~{clock(left)} left"
        money = self.money(trials, counts)
        if money is not None:
            spent, forecast = money
            text += f" | {usd(spent)} spent" + (f", ~{usd(forecast)} at the end" if forecast is not None else "")
        if self.budget_hours:
            text += f" | {self.spent_hours / self.budget_hours:.0%} of the budget"
        outage = current_outage()
        if outage is not None:
            text += f" | store {outage[0]} unreachable since {time.strftime('%H:%M:%S', time.localtime(outage[1]))}"
        return text


class LiveProgress(Callback):
    """The progress line of `sweep run` and `sweep resume`."""

    def __init__(self, metric: str, mode: str, total: int, max_epochs: int, live: bool | None = None,
                 price_per_hour: float = 0.0, units: float = 1.0, hours_before: float = 0.0,
                 budget_hours: float = 0.0, ledger: Ledger | None = None):
        self.args = (metric, mode, total, max_epochs, price_per_hour, units, hours_before, budget_hours, ledger)
        self.live = live
        self._state: SweepProgress | None = None
        self._display: Any = None  # rich's Live, where the output is a terminal
        self._printed = 0.0
        self._last_text = ""
        self._new_best = False

    def __getstate__(self):  # Tune pickles its callbacks with the sweep: the display stays here
        return {"args": self.args, "live": self.live, "_state": None, "_display": None, "_printed": 0.0,
                "_last_text": "", "_new_best": False}

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info) -> None:
        self._state = SweepProgress(*self.args)
        self._printed = time.monotonic()  # the first plain line after 30 s, not at the start
        if self.live is None:
            self.live = sys.stdout.isatty()
        if self.live:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            self._display = Live(Text(""), console=Console(), refresh_per_second=4, transient=False)
            self._display.start()

    def _show(self, trials, force: bool = False) -> None:
        # the line reads every trial: built only when it is shown (a step is one result, and a
        # sweep of a thousand trials takes thousands of steps)
        if self._state is None:
            return
        now = time.monotonic()
        if self._display is not None:
            if force or now - self._printed >= LIVE_EVERY_S:
                from rich.text import Text

                self._display.update(Text(self._state.line(trials)))
                self._printed = now
            return
        if not force and now - self._printed < PLAIN_EVERY_S:
            return
        text = self._state.line(trials)
        if force or text.split("]", 1)[1] != self._last_text:
            print(text, flush=True)
            self._printed, self._last_text = now, text.split("]", 1)[1]

    def on_step_end(self, iteration, trials, **info):
        # after the step: a trial that ended in it has its final status by now
        if self._state is not None:
            self._show(trials, force=self._new_best)
            self._new_best = False

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._state.on_result(trial.trial_id, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._new_best = self._state.on_finished(trial.trial_id) or self._new_best

    def on_trial_error(self, iteration, trials, trial, **info):
        self._state.on_finished(trial.trial_id)

    def on_experiment_end(self, trials, **info):
        if self._display is not None:
            self._show(trials, force=True)
            self._display.stop()
            self._display = None
