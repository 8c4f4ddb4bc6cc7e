"""Where things are in a run folder: every path of a run is built here and only here.

    RUN/resweep.json                       the plan (sweeps.runfolder.plan)
    RUN/driver.json                        who drives the sweep now: host, pid, heartbeat (sweeps.runfolder.claim)
    RUN/tune-state.tar                     Ray Tune's state, stored whole (sweeps.engine.archive)
    RUN/experiment_state-*.json, ...       Ray Tune's state, copied file by file
    RUN/trial_<id>/params.json             the trial's configuration (written by Tune)
    RUN/trial_<id>/result.json             a JSON line per reported epoch (written by Tune)
    RUN/trial_<id>/error.txt               the traceback of a trial that raised (written by Tune)
    RUN/trial_<id>/checkpoint_<epoch>/     the trial's kept checkpoints (sweeps.engine.trial)
    RUN/optuna.db                          the sweep as an Optuna study (sweeps.runfolder.run)
    RUN/report/report.md                   `analysis report`'s default output (analysis.report)

RUN is a local folder or a URI (s3://, gs://); paths are joined with `sweeps.runfolder.storage.join`,
which keeps a URI a URI. Imports nothing heavy: the trial actors, the driver and the readers
all use it.
"""

from __future__ import annotations

import re
from pathlib import Path

from sweeps.runfolder.storage import join

PLAN_FILE = "resweep.json"
CLAIM_FILE = "driver.json"
STATE_ARCHIVE = "tune-state.tar"
STATE_PREFIX = "experiment_state-"  # Tune's newest trial states: experiment_state-<date>.json
# Tune's own state files at the top of a run folder (what `Tuner.restore` reads back).
STATE_FILE = re.compile(r"^(experiment_state|search_gen_state|searcher-state|callback-states|basic-variant-state)"
                        r"-[\w.-]+\.(json|pkl)$|^tuner\.pkl$")
TRIAL_PREFIX = "trial_"
PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"
OPTUNA_DB = "optuna.db"
REPORT_DIR = "report"
REPORT_FILE = "report.md"
# The result key naming the checkpoint folder of an epoch (Tune's own `checkpoint_dir_name`
# is None in every result: Tune is given no checkpoint, the trial keeps its own).
CHECKPOINT_KEY = "checkpoint_name"
CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d{6})$")


def plan_file(run: str) -> str:
    return join(run, PLAN_FILE)


def claim_file(run: str) -> str:
    return join(run, CLAIM_FILE)


def state_archive(run: str) -> str:
    return join(run, STATE_ARCHIVE)


def is_state_file(name: str) -> bool:
    """An `experiment_state-*.json`: the trials' states, newest name last."""
    return name.startswith(STATE_PREFIX) and name.endswith(".json")


def state_file(run: str, name: str) -> str:
    """One of Tune's state files (STATE_FILE names them) at the top of the run folder."""
    return join(run, name)


def trial_folder_name(trial_id: str) -> str:
    """The folder of a trial (Tune's `trial_dirname_creator` and the readers' fallback)."""
    return f"{TRIAL_PREFIX}{trial_id}"


def is_trial_folder(name: str) -> bool:
    return name.startswith(TRIAL_PREFIX)


def trial_folder(run: str, folder_name: str) -> str:
    return join(run, folder_name)


def params_file(trial: str) -> str:
    return join(trial, PARAMS_FILE)


def result_file(trial: str) -> str:
    return join(trial, RESULT_FILE)


def error_file(trial: str) -> str:
    return join(trial, ERROR_FILE)


def checkpoint_name(epoch: int) -> str:
    return f"checkpoint_{epoch:06d}"


def checkpoint_folder(trial: str, name: str) -> str:
    return join(trial, name)


def optuna_db(run: str) -> str:
    return join(run, OPTUNA_DB)


def report_folder(run: str) -> str:
    return join(run, REPORT_DIR)


def enclosing_run(path: Path) -> Path | None:
    """The run folder that `path` (a local path) is, or is inside, unless it is in the run's own
    report folder: where a command's output would land among a run's own files."""
    path = Path(path).expanduser().resolve()
    for parent in [path, *path.parents]:
        if (parent / PLAN_FILE).is_file():
            report = parent / REPORT_DIR
            return None if path == report or report in path.parents else parent
    return None
