"""Optuna's NSGA-II sampler, as Tune can pickle it.

Tune pickles the searcher, and with it the sampler, when it starts a sweep (`tuner.pkl`) and
each time it saves the sweep's state. Optuna 5's genetic samplers hold a `threading.Lock`,
which pickle refuses, so a sweep with `--setting nsga2` failed before its first trial. The
lock guards a cache of the study's generations: it is made anew when the sampler is loaded."""

from __future__ import annotations

import threading
from typing import Any

from optuna.samplers import NSGAIISampler


class PicklableNSGAII(NSGAIISampler):
    """NSGAIISampler that pickles: its lock is left out and made anew."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_thread_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()  # unused by the Optuna versions before 5
