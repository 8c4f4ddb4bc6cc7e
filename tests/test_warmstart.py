"""Warm start (`sweep run PRESET --warm-start RUN`): an earlier sweep seeds the Optuna study and
its best configurations train first; the report names the trials it inherited; an earlier
sweep that does not fit is refused with one line."""

import json
import math

import pytest
from conftest import preset
from typer.testing import CliRunner

from analysis.report import write_report
from sweeps.cli import app
from sweeps.planner import make_plan
from sweeps.runfolder.run import load_run


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """A finished 4-trial sweep on the digits, one trial stopped early by ASHA at least."""
    root = tmp_path_factory.mktemp("earlier")
    result = CliRunner().invoke(app, ["run", preset(root, trials=4, epochs=3), "--local", "--storage",
                                      str(root / "runs"), "--name", "first", "--seed", "1"])
    assert result.exit_code == 0, result.output
    return root / "runs" / "first"


def _best(run):
    scored = run.trials.dropna(subset=[run.metric])
    return scored.sort_values(["stopped_early", run.metric], ascending=[True, False], kind="stable").iloc[0]


def test_a_warm_started_sweep_trains_the_earlier_best_first_and_the_report_names_it(earlier, tmp_path):
    result = CliRunner().invoke(app, ["run", preset(tmp_path, trials=4, epochs=3), "--local", "--storage",
                                      str(tmp_path / "runs"), "--name", "second", "--seed", "2",
                                      "--warm-start", str(earlier)])
    assert result.exit_code == 0, result.output
    assert f"warm start: 4 trials of {earlier} join the search" in result.output

    before, after = load_run(str(earlier)), load_run(str(tmp_path / "runs" / "second"))
    best = _best(before)
    first = after.trials[after.trials["trial_index"] == 1].iloc[0]
    for key in before.search_keys:  # the earlier best configuration trained first, exactly
        assert first[key] == best[key], key
    plan = json.loads((tmp_path / "runs" / "second" / "resweep.json").read_text())
    assert plan["warm_start"]["first"] == [best["trial_id"]] and plan["initial"] == {}
    assert {t["trial_id"] for t in plan["warm_start"]["trials"]} == set(before.trials["trial_id"])

    text = write_report(str(tmp_path / "runs" / "second"), tmp_path / "report").read_text()
    assert "## Warm start" in text
    row = next(line for line in text.splitlines() if line.startswith(f"| `{first['trial_id']}` |"))
    assert f"`{best['trial_id']}`" in row and f"{best[before.metric]:.4f}" in row
    # a sweep started from nothing says nothing of the kind
    assert "## Warm start" not in write_report(str(earlier), tmp_path / "cold").read_text()


def test_the_optuna_study_holds_the_earlier_trials_with_their_epochs(earlier, tmp_path):
    from sweeps.engine.driver import make_searcher
    from sweeps.presets import load_preset

    plan = make_plan(load_preset(preset(tmp_path, trials=8, epochs=3)), [], None, None, None, None,
                     str(tmp_path / "runs"), "w", 5, warm_start=str(earlier))
    study = make_searcher(plan, 2).searcher.searcher._ot_study  # the study TPE samples from
    before = load_run(str(earlier))
    told = [t for t in study.get_trials() if t.state.is_finished()]
    assert len(told) == len(before.trials)
    for _, row in before.trials.iterrows():
        curve = before.history[before.history["trial_id"] == row["trial_id"]].sort_values("epoch")["val_acc"]
        match = [t for t in told if all(math.isclose(t.params[k], row[k]) if isinstance(row[k], float)
                                        else t.params[k] == row[k] for k in before.search_keys)]
        assert len(match) == 1
        trial = match[0]
        assert list(trial.intermediate_values.values()) == pytest.approx(list(curve))
        if row["stopped_early"]:
            assert trial.state.name == "PRUNED"
        else:
            assert trial.state.name == "COMPLETE" and trial.value == pytest.approx(row["val_acc"])
    assert any(t.state.name == "PRUNED" for t in told), "ASHA stopped none of the earlier trials"
    # what trains first: 2 of 8 trials (a quarter), the earlier best two, waiting in the study's queue
    waiting = [t.system_attrs["fixed_params"] for t in study.get_trials() if t.state.name == "WAITING"]
    assert len(waiting) == 2 and waiting[0] == {k: _best(before)[k] for k in before.search_keys}


def _dry_run(tmp_path, earlier, *args, **preset_args):
    return CliRunner().invoke(app, ["run", preset(tmp_path, **preset_args), "--storage", str(tmp_path / "runs"),
                                    "--dry-run", "--warm-start", str(earlier), *args])


def _refused(result, text):
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert text in result.output and "Traceback" not in result.output


def test_an_earlier_sweep_that_does_not_fit_is_refused_with_one_line(earlier, tmp_path):
    path = preset(tmp_path, sweep={"metric": "val_loss", "mode": "min"})
    result = CliRunner().invoke(app, ["run", path, "--dry-run", "--warm-start", str(earlier)])
    _refused(result, "that sweep optimised val_acc (max) and this one val_loss (min)")

    _refused(_dry_run(tmp_path, earlier, "--set", "lr=0.01"), "that sweep searched lr, which this one fixes at 0.01")
    _refused(_dry_run(tmp_path, tmp_path / "nowhere"), f"--warm-start {tmp_path / 'nowhere'}: no such run folder")
    narrow = preset(tmp_path, name="narrow.yaml", search={"lr": {"loguniform": [20.0, 30.0]}}, initial={"lr": 25.0})
    _refused(CliRunner().invoke(app, ["run", narrow, "--dry-run", "--warm-start", str(earlier)]),
             "no earlier trial fits this sweep (4 lr outside this sweep's space)")


def test_a_key_only_this_sweep_searches_takes_the_earlier_fixed_value(earlier, tmp_path):
    # momentum was fixed at 0.9 in the earlier sweep: inside [0.8, 0.95], every trial is taken
    result = _dry_run(tmp_path, earlier, search={"momentum": {"uniform": [0.8, 0.95]}})
    assert result.exit_code == 0, result.output
    assert "warm start      4 trials of" in result.output and "best 2 configuration(s) train first" in result.output
    # outside [0.5, 0.6]: none fits
    _refused(_dry_run(tmp_path, earlier, search={"momentum": {"uniform": [0.5, 0.6]}}),
             "4 momentum outside this sweep's space")
