"""Multi-objective ASHA (sweeps/stopping.py): its rule on a case worked out by hand, the same
rule in the Tune scheduler and in the replay over recorded curves, and how a preset and a plan
choose it."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import preset
from typer.testing import CliRunner

from sweeps.presets import PresetError, load_preset
from sweeps.sim.asha import Curve, asha, replay
from sweeps.stopping import ParetoRungs, crowding, fronts, goes_on, ranked_above

# Five trials reach a rung (epoch 1) in this order: (validation accuracy: max, parameters: min).
ARRIVALS = [("A", 0.50, 100.0), ("B", 0.60, 200.0), ("C", 0.40, 300.0), ("D", 0.30, 50.0), ("E", 0.55, 150.0)]
# Worked out by hand, reduction factor 3 (a trial goes on if fewer than ceil(n/3) of the n rank above it):
# A: alone, goes on. B: A and B trade off (front 0, both ends: infinite crowding), none above -> on.
# C: A and B each beat it on both (front 1), 2 above, ceil(3/3) = 1 -> stopped.
# D: the cheapest: front 0 is D, A, B; D and B are its ends, A is inside; none above D -> on
#    (ASHA on accuracy alone stops it: 0.30 is below the 67th percentile of 0.50, 0.60, 0.40).
# E: front 0 is D, A, E, B. Crowding: A = (0.55 - 0.30)/0.30 + (150 - 50)/150 = 1.5;
#    E = (0.60 - 0.50)/0.30 + (200 - 100)/150 = 1.0; D and B infinite: 3 above, ceil(5/3) = 2 -> stopped.
HAND = {"A": False, "B": False, "C": True, "D": False, "E": True}  # True: stopped at the rung


def _signed(points):
    return np.array([[acc, -params] for acc, params in points])


def test_fronts_and_crowding_worked_out_by_hand():
    points = _signed([(0.50, 100), (0.60, 200), (0.40, 300), (0.30, 50), (0.55, 150)])
    assert fronts(points).tolist() == [0, 0, 1, 0, 0]
    distance = crowding(points[[3, 0, 4, 1]])  # front 0: D, A, E, B
    assert math.isinf(distance[0]) and math.isinf(distance[3])
    assert distance[1] == pytest.approx(1.5) and distance[2] == pytest.approx(1.0)
    assert ranked_above(points, 4) == 3 and ranked_above(points, 3) == 0 and ranked_above(points, 2) == 4
    # three fronts: each point beats the next on both objectives
    assert fronts(_signed([(0.9, 1), (0.8, 2), (0.7, 3)])).tolist() == [0, 1, 2]
    # a NaN (a diverged trial) is the worst value there is, never a front of its own
    assert fronts(np.array([[np.nan, -1.0], [0.5, -1.0]])).tolist() == [1, 0]


def test_the_rung_decides_as_worked_out_by_hand():
    rungs = ParetoRungs([1], reduction_factor=3, signs=[1, -1])
    stopped = {name: rungs.on_result(name, 1, [acc, params]) for name, acc, params in ARRIVALS}
    assert stopped == HAND
    # judged once per rung: the same trial's next report at that epoch (a replay) goes on
    assert rungs.on_result("C", 1, [0.40, 300.0]) is False
    # a replayed epoch of a trial this driver had not seen is recorded, not judged
    assert rungs.on_result("F", 1, [0.0, 1e9], judge=False) is False and "F" in rungs.recorded[1]


def test_with_one_objective_it_is_a_rank_cutoff_where_ties_go_on():
    values = np.array([[0.5], [0.7], [0.6], [0.7]])
    assert goes_on(values[:2], 1, 2)  # the best of 2: on
    assert not goes_on(values[:3], 2, 3) and goes_on(values[:3], 2, 2)  # second of 3: top 1 stops it, top 2 not
    assert goes_on(values, 3, 4)  # tied with the best: none ranks strictly above it


def test_the_tune_scheduler_runs_the_same_rule_stops_at_the_last_epoch_and_skips_replays():
    from ray.tune.schedulers import TrialScheduler

    from sweeps.engine.schedulers import ParetoASHA

    scheduler = ParetoASHA({"val_acc": "max", "params": "min"}, time_attr="epoch", max_t=2, grace_period=1,
                           reduction_factor=3)
    decisions = {name: scheduler.on_trial_result(None, SimpleNamespace(trial_id=name),
                                                 {"epoch": 1, "val_acc": acc, "params": params})
                 for name, acc, params in ARRIVALS}
    assert decisions == {name: TrialScheduler.STOP if stop else TrialScheduler.CONTINUE for name, stop in HAND.items()}
    worst = SimpleNamespace(trial_id="G")
    assert scheduler.on_trial_result(None, worst, {"epoch": 1, "val_acc": 0.0, "params": 1e9, "replayed": True}) \
        == TrialScheduler.CONTINUE  # judged by the driver that trained it
    assert scheduler.on_trial_result(None, worst, {"epoch": 2, "val_acc": 0.0, "params": 1e9}) == TrialScheduler.STOP
    assert scheduler.on_trial_result(None, worst, {"epoch": 1, "val_acc": 0.1}) == TrialScheduler.CONTINUE


def test_a_resumed_scheduler_learns_the_finished_trials_stored_epochs(tmp_path):
    from pyarrow.fs import LocalFileSystem

    from sweeps.engine.schedulers import SnapshottingParetoASHA

    scheduler = SnapshottingParetoASHA({"val_acc": "max", "params": "min"}, time_attr="epoch", max_t=4,
                                       grace_period=1, reduction_factor=3)
    finished = []
    for name, acc, params in ARRIVALS[:2]:  # A and B finished under the killed driver
        folder = tmp_path / name
        folder.mkdir()
        rows = [{"epoch": e, "val_acc": acc, "params": params} for e in (1, 2, 3, 4)]
        (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        trial = SimpleNamespace(trial_id=name, status="TERMINATED", relative_logdir=name,
                                storage=SimpleNamespace(storage_filesystem=LocalFileSystem(),
                                                        trial_fs_path=str(folder)))
        scheduler.on_trial_add(None, trial)
        finished.append(trial)
    assert set(scheduler.rungs.recorded[1]) == {"A", "B"} and set(scheduler.rungs.recorded[3]) == {"A", "B"}
    # C after them is judged against A and B, as it would have been without the kill
    assert scheduler.rungs.on_result("C", 1, [0.40, 300.0]) is True


def test_the_replay_plays_the_same_rule_over_recorded_curves():
    curves = [Curve([acc, acc + 0.1], others=[[params, params]]) for _, acc, params in ARRIVALS]
    out = replay(curves, concurrency=1, grace_period=1, reduction_factor=3, objectives=["max", "min"])
    assert out.epochs == 2 * 3 + 1 * 2 and out.stopped == 2
    # the front of the trials as trained: A, B and D to the end (their best, their cost), C and E at their rung
    def rounded(front):
        return sorted((round(acc, 9), cost) for acc, cost in front)

    assert rounded(out.front) == [(0.4, 50.0), (0.6, 100.0), (0.7, 200.0)]
    assert rounded(out.fifo_front) == [(0.4, 50.0), (0.6, 100.0), (0.65, 150.0), (0.7, 200.0)]
    # ASHA on the first objective alone stops D, the cheapest, at the same rung: the front loses it
    queue = iter(curves)
    assert asha(lambda: next(queue, None), 1, 1, 3, 2) == [2, 2, 1, 1, 2]
    first = replay(curves, concurrency=1, grace_period=1, reduction_factor=3, objectives=["max", "min"],
                   rank_all=False)
    assert first.epochs == 8 and rounded(first.front) == [(0.3, 50.0), (0.6, 100.0), (0.65, 150.0), (0.7, 200.0)]


def test_a_preset_chooses_the_rule_and_the_plan_names_it(tmp_path):
    from sweeps.engine.driver import make_scheduler
    from sweeps.engine.schedulers import SnapshottingASHA, SnapshottingParetoASHA
    from sweeps.planner import make_plan

    def plan_of(**sweep):
        path = preset(tmp_path, sweep={"objectives": {"val_acc": "max", "gflops": "min"}, **sweep})
        return make_plan(load_preset(path), [], None, None, None, None, str(tmp_path / "runs"), "r", None)

    default = plan_of()
    assert default.early_stopping_by == "all-objectives" and default.pareto_stopping
    assert isinstance(make_scheduler(default), SnapshottingParetoASHA)
    assert "multi-objective ASHA" in default.stopping_rule and "val_acc, gflops" in default.stopping_rule
    first = plan_of(early_stopping="first-objective")
    assert not first.pareto_stopping and type(make_scheduler(first)) is SnapshottingASHA
    assert first.stopping_rule.startswith("ASHA on val_acc")
    from sweeps.cli import app

    shown = CliRunner().invoke(app, ["run", preset(tmp_path, sweep={"objectives": {"val_acc": "max", "params": "min"}}),
                                     "--dry-run"])
    assert shown.exit_code == 0 and "early stopping  multi-objective ASHA" in shown.output, shown.output
    # a plan written before the rule existed ran ASHA on its first objective, and reads so
    default.save()
    saved = json.loads((tmp_path / "runs" / "r" / "resweep.json").read_text())
    del saved["early_stopping_by"]
    (tmp_path / "runs" / "r" / "resweep.json").write_text(json.dumps(saved))
    from sweeps.runfolder.plan import SweepPlan

    assert SweepPlan.load(str(tmp_path / "runs" / "r")).stopping_rule.startswith("ASHA on val_acc")


@pytest.mark.parametrize("sweep, message", [
    ({"objectives": {"val_acc": "max", "params": "min"}, "early_stopping": "pareto"},
     "sweep.early_stopping='pareto': allowed: all-objectives, first-objective"),
    ({"objectives": {"val_acc": "max", "params": "min"}, "early_stopping": False},
     "sweep.early_stopping=False: allowed: all-objectives, first-objective (none at all: `sweep run "
     "--no-early-stopping`)"),
    ({"early_stopping": "first-objective"}, "this preset has one metric; leave it out"),
])
def test_a_bad_early_stopping_rule_is_one_line(tmp_path, sweep, message):
    with pytest.raises(PresetError) as err:
        load_preset(preset(tmp_path, sweep=sweep))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_ray_s_asha_records_a_restarted_trial_s_replayed_epochs_without_stopping_it():
    from ray.tune.schedulers import TrialScheduler

    from sweeps.engine.schedulers import SnapshottingASHA

    scheduler = SnapshottingASHA(time_attr="epoch", metric="val_acc", mode="max", max_t=4, grace_period=1,
                                 reduction_factor=2)
    trials = {name: SimpleNamespace(trial_id=name, status="RUNNING", relative_logdir=name) for name in "ABC"}
    for trial in trials.values():
        scheduler.on_trial_add(None, trial)

    def report(name, acc, **extra):
        return scheduler.on_trial_result(None, trials[name], {"epoch": 1, "val_acc": acc, **extra})

    assert report("A", 0.9) == TrialScheduler.CONTINUE
    # B passed rung 1 under the driver that trained it (against other trials); on a resume it replays
    # that epoch below A: recorded, not stopped
    assert report("B", 0.1, replayed=True) == TrialScheduler.CONTINUE
    assert "B" in dict(scheduler._trial_info["B"]._rungs[-1][1])
    assert report("C", 0.1) == TrialScheduler.STOP  # a trained epoch as low is judged as before
    last = scheduler.on_trial_result(None, trials["B"], {"epoch": 4, "val_acc": 0.1, "replayed": True})
    assert last == TrialScheduler.STOP  # its last epoch ends it, replayed or not
