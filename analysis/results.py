"""A run folder into pandas: the trials table and the per-epoch history."""

from __future__ import annotations

import pandas as pd

from sweeps.runfolder.run import Run, load_run
from trainer.metrics import COST

__all__ = ["Run", "load_run", "results_table"]


def results_table(run_path: str, top: int | None = None) -> pd.DataFrame:
    """The trials table as `analysis table` prints it, best first."""
    run = load_run(run_path)
    frame = run.ranked()
    if top:
        frame = frame.head(top)
    columns = ["trial_id", "status", "epochs_trained", run.metric, "stopped_early", "failure", "retries", "node_losses",
               "test_acc",
               *COST, *run.search_keys]
    return frame[list(dict.fromkeys(columns))].reset_index(drop=True)
