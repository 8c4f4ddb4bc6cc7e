"""Where things are in a run folder, named once: what the trials write and the readers read.

    RUN/resweep.json                       the plan (sweeps.plan)
    RUN/tune-state.tar                     Ray Tune's state, stored whole (sweeps.snapshot)
    RUN/experiment_state-*.json, ...       Ray Tune's state, copied file by file
    RUN/trial_<id>/result.json             a JSON line per reported epoch (written by Tune)
    RUN/trial_<id>/checkpoint_<epoch>/     the trial's kept checkpoints (sweeps.trial)
    RUN/optuna.db                          the sweep as an Optuna study (sweeps.rundir)

Imports nothing heavy: the trial actors, the driver and the readers all use it.
"""

from __future__ import annotations

import re

TRIAL_PREFIX = "trial_"
# The result key naming the checkpoint folder of an epoch (Tune's own `checkpoint_dir_name`
# is None in every result: Tune is given no checkpoint, the trial keeps its own).
CHECKPOINT_KEY = "checkpoint_name"
CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d{6})$")


def checkpoint_name(epoch: int) -> str:
    return f"checkpoint_{epoch:06d}"
