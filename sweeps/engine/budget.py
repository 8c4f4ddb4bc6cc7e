"""A sweep's budget in Ray Tune (the rules: sweeps.budget). Three places, one `Ledger`:
- `BudgetGate`, a searcher wrapper under the ConcurrencyLimiter: a trial that the limiter lets
  start is not created while the starting rule says no (Tune starts every trial it creates);
- the schedulers (sweeps.engine.schedulers) count each report, pause a trial after its epoch
  once the stopping rule fires, and start no paused trial again;
- `BudgetEnd`, a callback: when nothing runs and nothing may start, it ends the sweep the way
  Ctrl-C does (Tune's SIGUSR1: the state saved, paused and unstarted trials left for `sweep
  resume`), since Tune by itself would wait for ever for the trials it cannot start.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.search import Searcher

from sweeps.budget import Ledger


class BudgetGate(Searcher):
    """The searcher `searcher`, asked for a new trial only while `budget` lets one start."""

    def __init__(self, searcher: Searcher, budget: Ledger):
        self.searcher = searcher
        self.budget = budget
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.searcher.set_max_concurrency(max_concurrent)

    def suggest(self, trial_id: str) -> dict | None:
        if not self.budget.can_start():
            return None  # asked again at the next step: a trial that ends frees its commitment
        return self.searcher.suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def add_evaluated_point(self, *args, **kwargs):
        return self.searcher.add_evaluated_point(*args, **kwargs)

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)

    def get_state(self) -> dict:
        return {}  # the budget is the driver's: its plan's limit, its run folder's spent

    def set_state(self, state: dict) -> None:
        pass


class _HideStop(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Stop signal received" not in record.getMessage()


class BudgetEnd(Callback):
    """Ends the sweep once the budget leaves nothing to run (see the module's docstring)."""

    def __init__(self, budget: Ledger, total: int):
        self.budget, self.total = budget, total
        self.ended = False  # True once it ended the sweep: the summary says so

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        if self.ended or not self.budget.limit or self.budget.running:
            return  # the ledger knows a trial runs: every trial is read only when none does
        statuses = [t.status for t in trials]
        if Trial.RUNNING in statuses or Trial.PENDING in statuses:
            return  # what runs may end (freeing its commitment) or pause; what waits starts
        wanted = len(trials) < self.total or Trial.PAUSED in statuses
        if wanted and (self.budget.reached or not self.budget.can_start()):
            self.ended = True
            logging.getLogger("ray.tune.tune").addFilter(_HideStop())  # the summary says why it ended
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's handler: the loop ends after this step


def tune_handles_sigusr1() -> bool:
    """Whether the running Tune loop ends on SIGUSR1 (it installs its handler in the main thread only)."""
    return callable(signal.getsignal(signal.SIGUSR1))


def attach(search_alg: Any, scheduler: Any, budget: Ledger) -> Any:
    """Give a restored sweep's searcher chain and scheduler this driver's `budget`; returns the
    searcher (the gate put in where a sweep from before budgets has none)."""
    scheduler.budget = budget
    node = search_alg
    while node is not None:
        if isinstance(node, BudgetGate):
            node.budget = budget
            return search_alg
        inner = getattr(node, "searcher", None)
        if inner is not None and not hasattr(inner, "searcher") and hasattr(node, "searcher"):
            node.searcher = BudgetGate(inner, budget)  # around the base searcher, as a new sweep has it
            return search_alg
        node = inner
    return search_alg
