"""Tune's schedulers as a sweep uses them: ASHA on the metric, multi-objective ASHA
(sweeps.stopping: every objective at each rung) or FIFO (every trial to the end), that snapshot
the sweep as soon as a trial is added (sweeps.engine.archive), keep the sweep's budget
(sweeps.budget: a trial pauses after its epoch once the budget is reached), and, for the ASHAs,
learn on a resume the epochs of the trials that had already finished (Tune keeps no scheduler
state, and a resumed sweep would otherwise judge its later trials against the unfinished ones
alone)."""

from __future__ import annotations

import time

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from sweeps.budget import Ledger
from sweeps.engine.archive import SNAPSHOT_SPACING, write_archive
from sweeps.engine.population import Population
from sweeps.runfolder.layout import result_file
from sweeps.runfolder.results import parse_results
from sweeps.stopping import ParetoRungs, rungs
from trainer.metrics import sign


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

class _Budgeted:
    """A scheduler that feeds the sweep's `budget` every trial's reports and ends, and pauses a
    trial after its epoch once the budget is reached (a trial ASHA stops is stopped all the same)."""

    budget: Ledger | None = None  # the driver's (sweeps.engine.budget.attach on a resume)

    def on_trial_add(self, tune_controller, trial):
        super().on_trial_add(tune_controller, trial)
        if self.budget is not None and trial.status not in (Trial.TERMINATED, Trial.ERROR):
            self.budget.add(trial.trial_id)

    def on_trial_result(self, tune_controller, trial, result):
        decision = super().on_trial_result(tune_controller, trial, result)
        if self.budget is not None and self.budget.on_result(trial.trial_id, result) \
                and decision == TrialScheduler.CONTINUE:
            self.budget.paused(trial.trial_id)
            return TrialScheduler.PAUSE  # its checkpoint of this epoch is written: `sweep resume` goes on from it
        return decision

    def on_trial_complete(self, tune_controller, trial, result):
        super().on_trial_complete(tune_controller, trial, result)
        if self.budget is not None:
            self.budget.end(trial.trial_id)

    def on_trial_error(self, tune_controller, trial):
        super().on_trial_error(tune_controller, trial)
        if self.budget is not None:
            self.budget.end(trial.trial_id)

    def on_trial_remove(self, tune_controller, trial):
        super().on_trial_remove(tune_controller, trial)
        if self.budget is not None:
            self.budget.end(trial.trial_id)

    def choose_trial_to_run(self, tune_controller):
        if self.budget is not None and self.budget.reached:
            return None  # a paused trial waits for `sweep resume --budget`
        return super().choose_trial_to_run(tune_controller)


class ParetoASHA(FIFOScheduler):
    """Multi-objective ASHA (one bracket): at each rung a trial goes on if it is among the best
    1/reduction-factor of the trials that reached the rung, ranked over every objective by
    sweeps.stopping's rule. Rungs count `time_attr` (the epoch), as Ray's ASHAScheduler's do."""

    def __init__(self, objectives: dict[str, str], time_attr: str, max_t: int, grace_period: int,
                 reduction_factor: float):
        super().__init__()
        self._objectives = list(objectives)
        self._time_attr, self._max_t = time_attr, max_t
        self.rungs = ParetoRungs(rungs(grace_period, reduction_factor, max_t), reduction_factor,
                                 [sign(mode) for mode in objectives.values()])

    def _record(self, trial, result: dict, judge: bool) -> str:
        if self._time_attr not in result or any(result.get(k) is None for k in self._objectives):
            return TrialScheduler.CONTINUE
        epoch = int(result[self._time_attr])
        if epoch >= self._max_t:
            return TrialScheduler.STOP  # as Ray's ASHA: the last epoch is not judged
        values = [float(result[k]) for k in self._objectives]
        return TrialScheduler.STOP if self.rungs.on_result(trial.trial_id, epoch, values, judge) \
            else TrialScheduler.CONTINUE

    def on_trial_result(self, tune_controller, trial, result):
        # a restarted trial replays the epochs it had trained: they were judged then
        return self._record(trial, result, judge=not result.get("replayed"))

    def debug_string(self) -> str:
        return f"multi-objective ASHA over {', '.join(self._objectives)}"


class _LearnFinished:
    """On a resume, feed the scheduler the stored epochs of each trial that had finished."""

    def on_trial_add(self, tune_controller, trial):
        super().on_trial_add(tune_controller, trial)
        if trial.status != "TERMINATED":
            return
        for row in _stored_results(trial):
            self._learn(tune_controller, trial, row)

    def _learn(self, tune_controller, trial, row: dict) -> None:
        raise NotImplementedError  # each scheduler records a stored epoch its own way


class _ReplaysNotJudged:
    """Ray's ASHA judges every report, and a trial restarted from its checkpoint (a resume, a
    retry) replays the epochs it had trained: recorded at their rungs as Ray records them, but
    never a reason to stop it (it was let go on when it trained them, against other rungs)."""

    def on_trial_result(self, tune_controller, trial, result):
        decision = super().on_trial_result(tune_controller, trial, result)
        if result.get("replayed") and decision == TrialScheduler.STOP and result[self._time_attr] < self._max_t:
            return TrialScheduler.CONTINUE
        return decision


class SnapshottingASHA(_Budgeted, _SnapshotNewTrials, _LearnFinished, _ReplaysNotJudged, ASHAScheduler):
    """Ray's ASHA on the metric."""

    def _learn(self, tune_controller, trial, row: dict) -> None:
        if self._time_attr in row and self._metric in row:
            ASHAScheduler.on_trial_result(self, tune_controller, trial, row)


class SnapshottingParetoASHA(_Budgeted, _SnapshotNewTrials, _LearnFinished, ParetoASHA):
    def _learn(self, tune_controller, trial, row: dict) -> None:
        self._record(trial, row, judge=False)


class SnapshottingFIFO(_Budgeted, _SnapshotNewTrials, FIFOScheduler):
    pass


class SnapshottingPopulation(_Budgeted, _SnapshotNewTrials, Population):
    """Population-based training (sweeps.engine.population)."""
