"""Sweeps of two objectives: preset validation, the Pareto front (a hand-counted case), and a real
sweep of the digits trading accuracy against compute, ending with a front in its report."""

import math

import pandas as pd
import pytest
from conftest import preset
from typer.testing import CliRunner

from analysis.stats import pareto_front
from sweeps.cli import app
from sweeps.presets import PresetError, load_preset


def test_the_front_is_the_trials_no_other_beats_on_both():
    trials = pd.DataFrame({"trial_id": list("abcdef"),
                           "val_acc": [0.90, 0.95, 0.80, 0.95, 0.70, 0.90],
                           "latency_ms": [2.0, 5.0, 1.0, 6.0, 1.5, 2.0]})
    front = pareto_front(trials, {"val_acc": "max", "latency_ms": "min"})
    # d loses to b (same accuracy, slower); e loses to c (less accurate, slower); a and f tie: both stay
    assert list(front["trial_id"]) == ["a", "b", "c", "f"]
    # both maximised: d (as accurate as b, and higher) beats every other
    assert list(pareto_front(trials, {"val_acc": "max", "latency_ms": "max"})["trial_id"]) == ["d"]


@pytest.mark.parametrize("objectives, message", [
    ({"val_acc": "max"}, "needs two or more"),
    ({"latency_ms": "min", "val_acc": "max"}, "the first (latency_ms) is what ASHA ranks epochs by"),
    ({"val_acc": "max", "speed": "max"}, "sweep.objectives.speed: unknown"),
    ({"val_acc": "max", "latency_ms": "low"}, "sweep.objectives.latency_ms='low'; allowed: max, min"),
])
def test_bad_objectives_are_one_line(tmp_path, objectives, message):
    with pytest.raises(PresetError, match="sweep.objectives") as err:
        load_preset(preset(tmp_path, sweep={"objectives": objectives}))
    assert message in str(err.value)


def test_the_shipped_pareto_preset_searches_three_resnets():
    p = load_preset("flowers5-pareto")
    assert p.objectives == {"val_acc": "max", "latency_ms": "min"} and (p.metric, p.mode) == ("val_acc", "max")
    assert set(p.search["model"].args) == {"resnet9", "resnet18", "resnet34"}


@pytest.mark.slow
def test_a_two_objective_sweep_ends_with_a_pareto_front(tmp_path):
    # one at a time: the rungs see the trials in the order they started, which the replay below can follow
    path = preset(tmp_path, trials=6, epochs=2, search={"width": {"choice": [4, 8, 32]}}, initial={"width": 8},
                  sweep={"objectives": {"val_acc": "max", "gflops": "min"}, "concurrency": 1})
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", path, "--local", "--storage", str(runs), "--name", "mo", "--seed", "1"])
    assert result.exit_code == 0, result.output
    from analysis.report import write_report
    from sweeps.runfolder.run import load_run

    run = load_run(str(runs / "mo"))
    assert run.plan.objectives == {"val_acc": "max", "gflops": "min"}
    assert run.trials["gflops"].notna().all() and run.trials["params"].notna().all()
    # multi-objective ASHA by default: the same rule replayed over the run's own epochs stops the same trials
    assert run.plan.pareto_stopping
    from sweeps.sim.asha import Curve, asha

    curves = []
    for _, trial in run.trials.sort_values("trial_index").iterrows():
        rows = run.history[run.history["trial_id"] == trial["trial_id"]].sort_values("epoch")
        pad = [math.nan] * (run.max_epochs - len(rows))
        curves.append(Curve(list(rows["val_acc"]) + pad, others=[list(rows["gflops"]) + pad]))
    queue = iter(curves)
    replayed = asha(lambda: next(queue, None), 1, run.plan.grace_period, run.plan.reduction_factor, run.max_epochs,
                    objectives=["max", "min"])
    assert replayed == list(run.trials.sort_values("trial_index")["epochs_trained"]), run.trials
    report = write_report(str(runs / "mo"), tmp_path / "report").read_text()
    section = report[report.index("## Pareto front"):report.index("## Learning curves")]
    assert "Objectives `val_acc` (max), `gflops` (min)" in section  # in the preset's order: val_acc first
    rows = [line for line in section.splitlines() if line.startswith("| ") and "trial_id" not in line]
    # the cheapest trial and the most accurate one differ (compute, not a timed latency: the same every run)
    assert len(rows) >= 2, section
    assert (tmp_path / "report" / "pareto.png").stat().st_size > 1000
    assert "Early stopping: multi-objective ASHA (grace period 1, reduction factor 2)" in section
    front = pareto_front(run.scored, run.plan.objectives)
    early = front[front["stopped_early"]]
    assert (f"{len(early)} of the front's {len(front)} were stopped early" if len(early)
            else "Every trial on the front trained to its last epoch.") in section
    for _, member in early.iterrows():  # each with the rung it was stopped at
        assert f"| {member['trial_id']} | TERMINATED | {member['epochs_trained']} | epoch " in section
    refused = CliRunner().invoke(app, ["run", path, "--dry-run", "--warm-start", str(runs / "mo")])
    assert refused.exit_code == 2 and "a sweep of several objectives starts from nothing" in refused.output


def test_hypervolume_of_a_hand_counted_front():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "multi_objective", Path(__file__).parents[1] / "benchmarks" / "multi_objective.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # (cost, value): 2 x 0.5 from the first, then 1 x 0.3 more from the second; a dominated point adds nothing
    assert module.hypervolume([(1, 0.5), (2, 0.8), (2.5, 0.6)], cost_ref=3) == pytest.approx(1.3)
