"""The figures a report states, apart from how it says them: what the sweep spent, what the
compute bought, parameter importances, the Pareto front, the trials a warm start inherited and
the test split's most confident errors. Plain functions of a `Run` (or an evaluation) returning
numbers and tables; `report` writes them as markdown."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sweeps.runfolder.plan import EarlierTrial
from sweeps.search import optuna_distributions
from sweeps.stopping import fronts
from trainer.metrics import direction, sign

from .results import Run
from .trained import TestEvaluation


@dataclass
class Cost:
    """What the sweep spent, and what it would have without early stopping."""
    epochs_used: int
    epochs_full: int
    hours_used: float  # GPU-hours where trials had GPUs, else CPU-hours (epoch times summed)
    hours_full: float
    unit: str  # "GPU-hours" or "CPU-hours"

    @classmethod
    def of(cls, run: Run) -> Cost:
        trials = run.trials
        epochs = trials["epochs_trained"]
        per_epoch = trials["time_s"] / epochs.where(epochs > 0)
        return cls(epochs_used=int(epochs.sum()), epochs_full=len(trials) * run.max_epochs,
                   hours_used=run.trial_hours,
                   hours_full=float(np.nansum(per_epoch * run.max_epochs)) / 3600 * run.plan.units,
                   unit=run.plan.unit)


@dataclass
class ComputeBought:
    """The best value so far against the trial-hours spent, epoch by epoch in the order the
    epochs ended; where the final best was first reached within 0.5 points."""
    hours: np.ndarray
    best_so_far: np.ndarray
    reached_at: int  # index of the first epoch within 0.5 points of the final best
    fifo_hours: float  # the same trials trained to the end


def compute_bought(run: Run, fifo_hours: float) -> ComputeBought | None:
    history = run.history
    metric = run.metric
    if history.empty or metric not in history or "epoch_time_s" not in history:
        return None
    rows = history.dropna(subset=[metric, "epoch_time_s"])
    # one row per epoch: a replayed row here stands for an epoch whose trained row an earlier
    # driver wrote and a resumed one replaced (sweeps.runfolder.results.trained_rows)
    if rows.empty:
        return None
    if "finished_at" in rows and rows["finished_at"].notna().all():
        rows = rows.sort_values("finished_at", kind="stable")
    else:  # runs from before epochs were timed: in trial order
        order = {t: i for i, t in enumerate(run.trials["trial_id"])}
        rows = rows.assign(_order=rows["trial_id"].map(order)).sort_values(["_order", "epoch"], kind="stable")
    hours = np.cumsum(rows["epoch_time_s"].to_numpy(float) * run.plan.units) / 3600
    values = rows[metric].to_numpy(float)
    best = np.maximum.accumulate(values) if run.mode == "max" else np.minimum.accumulate(values)
    gap = (best[-1] - best) if run.mode == "max" else (best - best[-1])
    reached = int(np.argmax(gap <= 0.005 + 1e-12))
    return ComputeBought(hours, best, reached, fifo_hours)


def param_importances(run: Run) -> dict[str, float]:
    """fANOVA importances over the trials' best values (stopped-early trials included: their
    values are what ASHA judged them on). Empty when there are too few trials."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = run.scored[run.scored["status"] == "TERMINATED"]
    if len(trials) < 3 or not run.search_keys:
        return {}
    distributions = optuna_distributions(run.plan.search)
    study = optuna.create_study(direction=direction(run.mode))
    for _, row in trials.iterrows():
        params = {k: (row[k].item() if hasattr(row[k], "item") else row[k]) for k in distributions}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions,
                                                  value=float(row[run.metric])))
    try:
        return optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(
            seed=0))
    except (RuntimeError, ValueError):
        return {}


def pareto_front(trials: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """The trials no other trial beats on every objective at once (at least as good on all,
    better on one), in the order given."""
    signs = np.array([sign(mode) for mode in objectives.values()])
    values = trials[list(objectives)].to_numpy(float) * signs  # larger is better on every column
    return trials[fronts(values) == 0] if len(values) else trials


def inherited(run: Run) -> list[tuple[str, EarlierTrial]]:
    """(this sweep's trial id, the earlier trial) for each configuration a warm start took from
    an earlier sweep and trained again, matched on the parameters."""
    warm = run.plan.warm_start
    if warm is None:
        return []
    earlier = {t.trial_id: t for t in warm.trials}
    pairs = []
    for earlier_id in warm.first:
        params = earlier[earlier_id].params
        for _, row in run.trials.iterrows():
            if all(_same(row.get(k), v) for k, v in params.items()):
                pairs.append((str(row["trial_id"]), earlier[earlier_id]))
                break
    return pairs


def _same(a, b) -> bool:
    a = a.item() if hasattr(a, "item") else a
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def confident_errors(ev: TestEvaluation) -> np.ndarray:
    """Indices of the misclassified test images, the most confident errors first and taken in
    turn from each true class (the first errors of a test split sorted by class are all one
    class's)."""
    confidence = ev.logits.softmax(1).max(1).values.numpy()
    wrong = np.flatnonzero(ev.predictions != ev.labels)
    by_class = [sorted(wrong[ev.labels[wrong] == c], key=lambda i: -confidence[i])
                for c in np.unique(ev.labels[wrong])]
    by_class.sort(key=lambda errors: -confidence[errors[0]])
    order = [errors[k] for k in range(max(map(len, by_class), default=0)) for errors in by_class if k < len(errors)]
    return np.array(order, dtype=np.int64)
