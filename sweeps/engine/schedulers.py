"""Tune's schedulers as a sweep uses them: ASHA (or FIFO, every trial to the end) that
snapshot the sweep as soon as a trial is added (sweeps.engine.archive), and ASHA that, on a
resume, learns the epochs of the trials that had already finished."""

from __future__ import annotations

import time

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from sweeps.engine.archive import SNAPSHOT_SPACING, write_archive
from sweeps.runfolder.layout import result_file
from sweeps.runfolder.results import parse_results


def _stored_results(trial) -> list[dict]:
    """The epochs a trial reported, as its result file in the run folder holds them."""
    fs, folder = trial.storage.storage_filesystem, trial.storage.trial_fs_path
    try:
        with fs.open_input_stream(result_file(folder)) as f:
            return [r for r in parse_results(f.read().decode(errors="replace")) if not r.get("failure")]
    except (FileNotFoundError, OSError):
        return []

class _SnapshotNewTrials:
    """A scheduler that makes Tune snapshot the sweep, and archives it, as soon as a trial is
    added and before it starts (choose_trial_to_run comes after the trial is registered)."""

    _added = False
    _last_end = 0.0  # time.monotonic() when the last forced snapshot ended
    _last_cost = 0.0  # its duration, s

    def on_trial_add(self, tune_controller, trial):
        super().on_trial_add(tune_controller, trial)
        self._added = True

    def choose_trial_to_run(self, tune_controller):
        if self._added and time.monotonic() - self._last_end >= SNAPSHOT_SPACING * self._last_cost:
            self._added = False
            start = time.monotonic()
            # Schedulers get a wrapper that warns on methods outside its list; the controller's
            # save_to_dir writes the state files to the driver's staging folder, nothing more.
            controller = getattr(tune_controller, "_tune_controller", tune_controller)
            for trial in controller.get_trials():
                if trial.status == "PENDING" and not trial.relative_logdir:
                    # name its folder now, so the snapshot holds the name: a trial restored without
                    # one gets a new, suffixed folder where the old one exists
                    trial.init_local_path()
            controller.save_to_dir()
            write_archive(controller.get_trials())
            self._last_end = time.monotonic()
            self._last_cost = self._last_end - start
        return super().choose_trial_to_run(tune_controller)

class SnapshottingASHA(_SnapshotNewTrials, ASHAScheduler):
    """ASHA that, on a resume, learns the epochs of the trials that had finished: Tune keeps
    no scheduler state, and a resumed sweep would otherwise judge its later trials against
    the unfinished ones alone."""

    def on_trial_add(self, tune_controller, trial):
        super().on_trial_add(tune_controller, trial)
        if trial.status != "TERMINATED":
            return
        for row in _stored_results(trial):
            if self._time_attr in row and self._metric in row:
                ASHAScheduler.on_trial_result(self, tune_controller, trial, row)

class SnapshottingFIFO(_SnapshotNewTrials, FIFOScheduler):
    pass
