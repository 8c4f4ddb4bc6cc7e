"""Reading a run folder: what `sweep status` and `analysis` know about a sweep, finished,
interrupted or still running.

A run folder (sweeps.layout names its files) holds the plan, Ray Tune's trial states (read
as JSON, never unpickled) and a folder per trial with its parameters, a JSON line per epoch
(the names of trainer.metrics) and its kept checkpoints.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from trainer.errors import DIVERGED, OUT_OF_MEMORY
from trainer.metrics import BY_NAME, COST, current_names

from .errors import RunFolderError
from .layout import (CHECKPOINT_DIR, CHECKPOINT_KEY, checkpoint_folder, error_file, is_state_file, is_trial_folder,
                     optuna_db, params_file, result_file, state_file, trial_folder, trial_folder_name)
from .plan import SweepPlan
from .presets import optuna_distributions
from .storage import absolute, list_folder, read_text_or_none, write_bytes

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


__all__ = ["Outcome", "Run", "RunFolderError", "load_run", "experiment_state", "read_results", "parse_results",
           "export_study"]


def experiment_state(run_path: str) -> dict[str, dict[str, Any]]:
    """trial_id -> {status, retries, config} from Tune's newest experiment state (empty if none)."""
    names = sorted(n for n, _ in list_folder(run_path) if is_state_file(n))
    for name in reversed(names):
        text = read_text_or_none(state_file(run_path, name))
        try:
            data = json.loads(text or "")
        except ValueError:
            continue  # being rewritten right now: take the one before
        states = {}
        for entry in data.get("trial_data", []):
            try:
                meta = json.loads(entry[0]) if isinstance(entry[0], str) else entry[0]
                run_meta = json.loads(entry[1]) if isinstance(entry[1], str) else entry[1]
            except (ValueError, IndexError, TypeError):
                continue
            tag = str(meta.get("experiment_tag", ""))
            states[meta["trial_id"]] = {"status": meta.get("status", "UNKNOWN"),
                                        "folder": meta.get("relative_logdir") or trial_folder_name(meta["trial_id"]),
                                        "index": int(tag.split("_", 1)[0]) if tag[:1].isdigit() else 0,
                                        "retries": int(run_meta.get("num_failures", 0) or 0),
                                        "node_losses": int(run_meta.get("node_losses", 0) or 0),  # sweeps.reclaim
                                        "config": meta.get("config", {})}
        return states
    return {}


def read_results(trial_path: str, keep_repeats: bool = False) -> list[dict[str, Any]]:
    """The per-epoch results of a trial, by epoch, then its failure report if it ended with one.

    An epoch reported twice counts once: a trial that restarts (a retry, a resumed sweep)
    first reports again the epochs its checkpoint holds (`replayed`), which never replace a
    first report; an epoch trained again replaces the earlier one. `keep_repeats`: every
    line as written."""
    path = result_file(trial_path)
    return parse_results(read_text_or_none(path) or "", keep_repeats, source=path)


def parse_results(text: str, keep_repeats: bool = False, source: str | None = None) -> list[dict[str, Any]]:
    """`read_results` of a result file's text (older metric names read as today's). A last line
    without its newline is still being written and is left for later; a whole line that does not
    parse is damaged, skipped, and said once on stderr when the file is named by `source`."""
    rows, damaged = [], 0
    lines = text.splitlines()
    for i, line in enumerate(lines):
        try:
            row = current_names(json.loads(line))
            if not isinstance(row, dict):
                raise ValueError(line)
            rows.append(row)
        except (ValueError, AttributeError, TypeError):
            finished = i < len(lines) - 1 or text.endswith("\n")
            damaged += bool(finished and line.strip())
    if damaged and source:
        logging.getLogger("resweep").warning(f"{source}: {damaged} damaged line(s) skipped; the trial's other "
                                             f"epochs are read")
    if keep_repeats:
        return rows
    by_epoch: dict[int, dict[str, Any]] = {}
    for i, row in enumerate(rows):
        if row.get("failure"):
            continue
        epoch = int(row.get("epoch", row.get("training_iteration", i + 1)))
        if epoch not in by_epoch or not row.get("replayed") or by_epoch[epoch].get("replayed"):
            by_epoch[epoch] = row
    ending = [rows[-1]] if rows and rows[-1].get("failure") else []
    return [by_epoch[k] for k in sorted(by_epoch)] + ending


def _checkpoint_of(row: dict[str, Any]) -> str | None:
    """The checkpoint folder of a result row (`checkpoint_dir_name`: runs from before trials
    kept their own checkpoints)."""
    return row.get(CHECKPOINT_KEY) or row.get("checkpoint_dir_name")


def _finite(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


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
    def scored(self) -> pd.DataFrame:
        """The trials that have a value of the metric and did not fail: the ones a ranking may name."""
        trials = self.trials
        if trials.empty:
            return trials
        return trials[trials[self.metric].notna() & (trials["failure"] == "")]

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
        results = read_results(path) if path else []
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
        best_value, best_row = (math.nan, {})
        if values:
            best_value, best_row = (max if mode == "max" else min)(values, key=lambda vr: vr[0])
        kept = {n for n, is_dir in list_folder(path) if is_dir and CHECKPOINT_DIR.match(n)} if path else set()
        ranked = sorted(((v, r) for v, r in values if _checkpoint_of(r) in kept), key=lambda vr: vr[0],
                        reverse=mode == "max")
        checkpoint = checkpoint_folder(path, _checkpoint_of(ranked[0][1])) if ranked else ""
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
            "time_s": float(sum(_finite(r.get("epoch_time_s")) for r in epoch_rows)) if epoch_rows else math.nan,
            "node": last.get("node_id", last.get("node_ip", "")),
            "checkpoint": checkpoint, "error": error,
        }
        row.update({k: params.get(k) for k in search_keys})
        rows.append(row)
        for r in epoch_rows:
            history.append({"trial_id": trial_id, **{k: r[k] for k in BY_NAME if k in r}})
    columns = list(dict.fromkeys(TRIAL_COLUMNS[:4] + [metric] + TRIAL_COLUMNS[4:] + search_keys))
    trials = pd.DataFrame(rows, columns=columns).sort_values(["trial_index", "trial_id"], ignore_index=True)
    return Run(run_path, plan, trials, pd.DataFrame(history))


def export_study(run: Run) -> str:
    """Write the sweep as an Optuna study to `<run>/optuna.db` (SQLite), for optuna-dashboard
    and for the parameter importances of the report. Per-epoch values are its intermediate
    values; trials stopped by ASHA are PRUNED."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plan, trials, history = run.plan, run.trials, run.history
    direction = "maximize" if plan.mode == "max" else "minimize"
    distributions = optuna_distributions(plan.search)
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "study.db")
        study = optuna.create_study(storage=f"sqlite:///{db}", study_name=plan.name, direction=direction)
        study.set_user_attr("preset", plan.preset)
        for _, row in trials.iterrows():
            params = {k: (row[k].item() if hasattr(row[k], "item") else row[k]) for k in distributions}
            if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in params.values()):
                continue
            value = row[plan.metric]
            if row["status"] == "TERMINATED" and not row["failure"] and not math.isnan(value):
                state = optuna.trial.TrialState.PRUNED if row["stopped_early"] else optuna.trial.TrialState.COMPLETE
            elif row["status"] in ("ERROR", "TERMINATED"):
                state = optuna.trial.TrialState.FAIL
            else:
                continue  # still running or pending
            steps = history[history["trial_id"] == row["trial_id"]] if not history.empty else history
            intermediate = {int(r["epoch"]): float(r[plan.metric]) for _, r in steps.iterrows()
                            if plan.metric in r and not pd.isna(r[plan.metric])}
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions=distributions, state=state,
                value=float(value) if state == optuna.trial.TrialState.COMPLETE else None,
                intermediate_values=intermediate, user_attrs={"trial_id": row["trial_id"]}))
        target = optuna_db(run.path)
        write_bytes(target, Path(db).read_bytes())
    return target
