"""Reading a run folder: what `sweep status` and `analysis` know about a sweep, finished,
interrupted or still running.

A run folder (sweeps.runfolder.layout names its files) holds the plan, Ray Tune's trial states (read
as JSON, never unpickled) and a folder per trial with its parameters, a JSON line per epoch
(the names of trainer.metrics) and its kept checkpoints.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, cast

import pandas as pd

from sweeps.runfolder.layout import (
    CHECKPOINT_DIR,
    checkpoint_folder,
    error_file,
    is_trial_folder,
    params_file,
    result_file,
    trial_folder,
    trial_folder_name,
)
from sweeps.runfolder.plan import SweepPlan
from sweeps.runfolder.results import checkpoint_of, one_per_epoch, parse_results, trained_rows
from sweeps.runfolder.storage import absolute, list_folder, read_text_or_none
from sweeps.runfolder.tunestate import experiment_state
from trainer.errors import DIVERGED, OUT_OF_MEMORY
from trainer.metrics import BY_NAME, COST

# Columns of the trials table besides the sweep's metric (each trial's best value) and the
# searched parameters. `epochs_trained`: epochs the trial trained, at most the plan's max_epochs.
TRIAL_COLUMNS = ["trial_id", "trial_index", "status", "epochs_trained", "stopped_early", "failure", "diverged",
                 "retries", "node_losses", "best_epoch", "last_val_acc", "last_val_loss", "test_acc", "test_loss",
                 *COST, "time_s", "node", "checkpoint", "error"]


@dataclass(frozen=True)
class Outcome:
    """How a sweep's trials ended, counted once for `sweep run`'s summary and the report."""

    trained_to_end: int
    stopped_early: int  # by ASHA
    diverged: int  # halted by the trainer: the loss went NaN or infinite
    out_of_memory: int  # halted by the trainer: the GPU ran out of memory
    errored: int  # raised, retried, and raised again
    unfinished: int  # running or pending
    not_started: int  # planned, never created
    retries: int  # tries that failed for the trial's own reasons
    node_losses: int  # tries cut short by a node taken away (a spot reclaim): moves, not failures

    @property
    def trials(self) -> int:
        return (self.trained_to_end + self.stopped_early + self.diverged + self.out_of_memory + self.errored
                + self.unfinished + self.not_started)


def plain(value: Any) -> Any:
    """A value of the trials table as Python has it (numpy's scalars as int, float, str)."""
    return value.item() if hasattr(value, "item") else value


def _finite(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def epochs_left(ended: list[int], running: list[int], pending: int, max_epochs: int) -> float:
    """Epochs a sweep still has to train: each trial to come a finished trial's mean (`max_epochs`
    before any finished), each running one up to that mean (one at least). The progress line's
    time left and the forecasts of money use this one rule."""
    per_trial = sum(ended) / len(ended) if ended else max_epochs
    return sum(max(per_trial - e, 1.0) for e in running) + pending * per_trial


@dataclass
class Run:
    path: str
    plan: SweepPlan  # what the sweep was asked to do (its resweep.json)
    trials: pd.DataFrame  # a row per trial (TRIAL_COLUMNS, the metric, the searched keys)
    history: pd.DataFrame  # a row per trial and epoch (trial_id and the trainer.metrics names)

    @property
    def metric(self) -> str:
        return self.plan.metric

    @property
    def mode(self) -> str:
        return self.plan.mode

    @property
    def max_epochs(self) -> int:
        return self.plan.max_epochs

    @property
    def search_keys(self) -> list[str]:
        return list(self.plan.search)

    @property
    def trial_hours(self) -> float:
        """GPU-hours (CPU-hours for CPU trials) the trials trained, measured: every epoch trained
        counts once, a restarted trial's replays of its stored epochs not at all (nor the part of
        an epoch a lost node cut short, which nothing measured)."""
        seconds = self.trials["time_s"].sum(skipna=True) if not self.trials.empty else 0.0
        return float(seconds) * self.plan.units / 3600

    @property
    def spent(self) -> float:
        """Money spent so far at the plan's price (0 where it has none): measured time x price."""
        return self.trial_hours * self.plan.price_per_hour

    def epoch_s(self) -> float | None:
        """The trials' measured seconds per trained epoch (replays not counted); None before one."""
        epochs = int(self.trials["epochs_trained"].sum()) if not self.trials.empty else 0
        seconds = float(self.trials["time_s"].sum(skipna=True)) if epochs else 0.0
        return seconds / epochs if epochs and seconds else None

    def forecast_hours(self) -> float | None:
        """Unit-hours at the end: what was spent, and the epochs left at the trials' measured
        seconds per epoch; None before a measured epoch."""
        trials, per_epoch = self.trials, self.epoch_s()
        if per_epoch is None:
            return None
        ended = trials["status"].isin(["TERMINATED", "ERROR"])
        running = trials["status"] == "RUNNING"
        left = epochs_left([int(e) for e in trials.loc[ended, "epochs_trained"]],
                           [int(e) for e in trials.loc[running, "epochs_trained"]],
                           self.plan.trials - int(ended.sum()) - int(running.sum()), self.max_epochs)
        return self.trial_hours + left * per_epoch * self.plan.units / 3600

    def forecast(self) -> float | None:
        """Money at the end at the plan's price (`forecast_hours`); None without a price or a measured epoch."""
        hours = self.forecast_hours()
        return hours * self.plan.price_per_hour if hours is not None and self.plan.price_per_hour else None

    @property
    def scored(self) -> pd.DataFrame:
        """The trials that have a value of the metric and did not fail: the ones a ranking may name."""
        trials = self.trials
        if trials.empty:
            return trials
        return trials[trials[self.metric].notna() & (trials["failure"] == "")]

    def ranked(self) -> pd.DataFrame:
        """Every trial, best first by the sweep's metric (ties in trial order); trials without a
        value last. The one ranking: the summary, `analysis table`, the report and export use it."""
        return self.trials.sort_values(self.metric, ascending=self.mode == "min", na_position="last", kind="stable")

    def with_models(self) -> pd.DataFrame:
        """The ranked trials a model can come from: a value of the metric, no failure (a failed
        trial's value can be its best epoch's, before it diverged) and a kept checkpoint."""
        ranked = self.ranked()
        return ranked[ranked[self.metric].notna() & (ranked["failure"] == "") & (ranked["checkpoint"] != "")]

    def best(self, with_model: bool = False) -> pd.Series | None:
        """The best trial of those a ranking may name (`scored`); `with_model`: of those that kept
        a checkpoint. None where there is none."""
        ranked = self.ranked()
        ranked = self.with_models() if with_model else ranked[ranked.index.isin(self.scored.index)]
        return None if ranked.empty else ranked.iloc[0]

    def outcome(self) -> Outcome:
        trials = self.trials
        if trials.empty:
            return Outcome(0, 0, 0, 0, 0, 0, self.plan.trials, 0, 0)
        ended = trials[trials["status"] == "TERMINATED"]
        early = int(ended["stopped_early"].sum())
        diverged = int((ended["failure"] == DIVERGED).sum())
        out_of_memory = int((ended["failure"] == OUT_OF_MEMORY).sum())
        errored = int((trials["status"] == "ERROR").sum())
        return Outcome(trained_to_end=len(ended) - early - int((ended["failure"] != "").sum()),
                       stopped_early=early, diverged=diverged, out_of_memory=out_of_memory, errored=errored,
                       unfinished=len(trials) - len(ended) - errored,
                       not_started=max(0, self.plan.trials - len(trials)),
                       retries=int(trials["retries"].sum()), node_losses=int(trials["node_losses"].sum()))


def load_run(run_path: str, plan: SweepPlan | None = None) -> Run:
    """The plan, trials table and per-epoch history of a run folder. `plan`: the run's own, where
    the caller holds it (the driver): not read again, so that the store is not met as a first
    contact (said at once) but waited for as every other read is."""
    run_path = absolute(run_path)
    plan = plan or SweepPlan.load(run_path)
    metric, mode, max_epochs = plan.metric, plan.mode, plan.max_epochs
    search_keys = list(plan.search)
    states = experiment_state(run_path)
    trial_dirs = {n: trial_folder(run_path, n) for n, is_dir in list_folder(run_path) if is_dir and is_trial_folder(n)}
    rows, history = [], []
    # A folder Tune's state does not list belongs to a trial that started after the last state
    # snapshot of a driver that then died; the resumed sweep replaced it, so it is left out.
    if not states:  # no state copied yet: a trial per folder
        states = {n[len(trial_folder_name("")):]: {"folder": n} for n in trial_dirs}
    for trial_id in sorted(states):
        path = trial_dirs.get(states[trial_id]["folder"])
        written = parse_results(read_text_or_none(result_file(path)) or "", keep_repeats=True,
                                source=result_file(path)) if path else []
        results = one_per_epoch(written)
        # every epoch trained, as often as it was (an epoch trained twice after a crash was paid for twice)
        timed = [_finite(r["epoch_time_s"]) for r in trained_rows(written) if "epoch_time_s" in r]
        state = states.get(trial_id, {})
        params = state.get("config") or json.loads(read_text_or_none(params_file(path)) or "{}") if path else \
            state.get("config", {})
        status = state.get("status")
        last = results[-1] if results else {}
        if status is None:  # no experiment state yet: infer from the files
            status = "ERROR" if path and read_text_or_none(error_file(path)) else \
                ("TERMINATED" if last.get("done") else ("RUNNING" if results else "PENDING"))
        failure = str(last.get("failure") or "")  # diverged / out of memory: halted, not retried
        epoch_rows = [r for r in results if not r.get("failure")]
        epochs = int(epoch_rows[-1].get("epoch", len(epoch_rows))) if epoch_rows else 0
        values = [(_finite(r.get(metric)), r) for r in epoch_rows]
        values = [(v, r) for v, r in values if not math.isnan(v)]
        best_value, best_row = math.nan, cast(dict[str, Any], {})
        if values:
            best_value, best_row = (max if mode == "max" else min)(values, key=lambda vr: vr[0])
        kept = {n for n, is_dir in list_folder(path) if is_dir and CHECKPOINT_DIR.match(n)} if path else set()
        ranked = sorted(((v, r) for v, r in values if checkpoint_of(r) in kept), key=lambda vr: vr[0],
                        reverse=mode == "max")
        checkpoint = checkpoint_folder(path, checkpoint_of(ranked[0][1]) or "") if ranked and path else ""
        error = ""
        if status == "ERROR" and path:
            error_text = (read_text_or_none(error_file(path)) or "").strip().splitlines()
            error = error_text[-1][:200] if error_text else "error"
        if failure:
            error = str(last.get("error", failure))[:200]
        row = {
            "trial_id": trial_id, "trial_index": state.get("index", 0), "status": status, "epochs_trained": epochs,
            "stopped_early": bool(status == "TERMINATED" and not failure and epochs < max_epochs),
            "failure": failure, "diverged": int(failure == DIVERGED), "retries": state.get("retries", 0),
            "node_losses": state.get("node_losses", 0),
            metric: best_value, "best_epoch": int(best_row.get("epoch", 0)),
            "last_val_acc": _finite(last.get("val_acc")), "last_val_loss": _finite(last.get("val_loss")),
            "test_acc": _finite(last.get("test_acc")), "test_loss": _finite(last.get("test_loss")),
            **{key: next((_finite(r[key]) for r in epoch_rows if key in r), math.nan) for key in COST},
            # measured training time: each epoch trained counts, the replays of a restarted trial do not
            "time_s": float(sum(timed)) if timed else math.nan,  # nan: epochs from before they were timed
            "node": last.get("node_id", last.get("node_ip", "")),
            "checkpoint": checkpoint, "error": error,
        }
        row.update({k: params.get(k) for k in search_keys})
        rows.append(row)
        for r in epoch_rows:
            history.append({"trial_id": trial_id, **{k: r[k] for k in BY_NAME if k in r},
                            "replayed": bool(r.get("replayed"))})
    columns = list(dict.fromkeys(TRIAL_COLUMNS[:4] + [metric] + TRIAL_COLUMNS[4:] + search_keys))
    trials = pd.DataFrame(rows, columns=columns).sort_values(["trial_index", "trial_id"], ignore_index=True)
    return Run(run_path, plan, trials, pd.DataFrame(history))


