"""The run as an Optuna study, `optuna.db` in the run folder: for optuna-dashboard and the
parameter importances of the report. Imports Optuna only when it writes."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import pandas as pd

from sweeps.runfolder.layout import optuna_db
from sweeps.runfolder.run import Run
from sweeps.runfolder.storage import write_bytes
from sweeps.search import optuna_distributions
from trainer.metrics import direction


def export_study(run: Run) -> str:
    """Write the sweep as an Optuna study to `<run>/optuna.db` (SQLite), for optuna-dashboard
    and for the parameter importances of the report. Per-epoch values are its intermediate
    values; trials stopped by ASHA are PRUNED."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plan, trials, history = run.plan, run.trials, run.history
    study_direction = direction(plan.mode)
    distributions = optuna_distributions(plan.search)
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "study.db")
        study = optuna.create_study(storage=f"sqlite:///{db}", study_name=plan.name, direction=study_direction)
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
