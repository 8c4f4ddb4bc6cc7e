"""Search settings simulated on recorded curves (sweeps/sim/simulate.py): a case worked out by
hand, the nearest-configuration table, real Optuna samplers over many seeds, the CLI."""

import json
import math
import statistics

import pytest
from conftest import preset
from typer.testing import CliRunner

from sweeps.cli import app
from sweeps.search import SETTINGS, Setting
from sweeps.sim.simulate import SEED_BASE, Nearest, Recorded, Recording, compare, load_recording, simulate

SEARCH = {"lr": {"loguniform": [1e-3, 1.0]}, "optimizer": {"choice": ["sgd", "adam"]}}
# the four curves of tests/test_replay.py, each with its configuration and test accuracy
CONFIGS = [
    Recorded({"lr": 0.01, "optimizer": "sgd"}, [0.5, 0.6, 0.7, 0.8], [1, 1, 1, 1], 0.81),
    Recorded({"lr": 0.1, "optimizer": "sgd"}, [0.4, 0.7, 0.75, 0.9], [1, 1, 1, 1], 0.91),
    Recorded({"lr": 0.01, "optimizer": "adam"}, [0.6, 0.65, 0.66, 0.67], [1, 1, 1, 1], 0.66),
    Recorded({"lr": 0.1, "optimizer": "adam"}, [0.3, 0.5, 0.55, 0.6], [1, 1, 1, 1], 0.58),
]


def recording(initial=None, configs=CONFIGS) -> Recording:
    return Recording(SEARCH, initial or {}, "val_acc", "max", 4, 1, 2.0, 1, list(configs))


def test_nearest_matches_the_choice_first_then_the_log_scaled_number():
    nearest = Nearest(recording())
    assert nearest({"lr": 0.011, "optimizer": "sgd"}) == 0
    assert nearest({"lr": 0.05, "optimizer": "adam"}) == 3  # log midpoint of 0.01 and 0.1 is 0.0316
    assert nearest({"lr": 0.02, "optimizer": "adam"}) == 2
    # a far lr with the right optimizer beats a near lr with the wrong one
    assert nearest({"lr": 1.0, "optimizer": "adam"}) == 3


def test_a_sweep_worked_out_by_hand():
    # The four configurations start in order (given first, near but not equal to the recorded
    # ones), one at a time, ASHA grace 1, rf 2, 4 epochs (as test_replay works out): A trains
    # 4 epochs, B is stopped after 1 (0.4 < 0.5), C trains 4 (0.6 >= median(0.5, 0.4); 0.65
    # >= 0.6), D is stopped after 1 (0.3 < median(0.5, 0.4, 0.6)): 10 epochs. Of the trials
    # trained to the end (A: best 0.8, C: 0.67), A is the sweep's pick: its test accuracy, 0.81;
    # B's better curve (0.9 at epoch 4) is never seen.
    first = [{"lr": 0.012, "optimizer": "sgd"}, {"lr": 0.09, "optimizer": "sgd"},
             {"lr": 0.009, "optimizer": "adam"}, {"lr": 0.2, "optimizer": "adam"}]
    result = simulate(recording(), Setting("given", initial_first=False), trials=4, seed=0, first=first)
    assert result.trials == [0, 1, 2, 3]
    assert result.epochs == 10
    assert result.best_value == 0.8 and result.test_acc == 0.81
    # without early stopping every trial trains to the end and B, the best, is found
    fifo = simulate(recording(), Setting("given", initial_first=False), trials=4, seed=0, first=first,
                    early_stopping=False)
    assert fifo.epochs == 16 and fifo.test_acc == 0.91


def test_the_initial_configuration_runs_first_only_where_the_setting_says():
    rec = recording(initial={"lr": 0.1, "optimizer": "adam"})
    for seed in range(5):
        assert simulate(rec, SETTINGS["resweep"], trials=3, seed=seed).trials[0] == 3
    firsts = {simulate(rec, SETTINGS["tpe-no-initial"], trials=3, seed=seed).trials[0] for seed in range(8)}
    assert firsts != {3}, "without the initial configuration the first trial is drawn at random"


def test_real_samplers_over_many_seeds():
    # a larger table: 2 optimizers x 12 learning rates, the curve's level peaking at lr 0.1 for sgd
    configs = []
    for optimizer in ("sgd", "adam"):
        for k in range(12):
            lr = 10 ** (-3 + 3 * k / 11)
            level = 0.9 - 0.25 * abs(math.log10(lr) + (1 if optimizer == "sgd" else 2.5))
            configs.append(Recorded({"lr": lr, "optimizer": optimizer}, [level * f for f in (0.6, 0.8, 0.9, 1.0)],
                                    [1.0] * 4, level))
    rec = Recording(SEARCH, {}, "val_acc", "max", 4, 1, 2.0, 2, configs)
    summaries = compare(rec, [SETTINGS["resweep"], SETTINGS["random"], SETTINGS["qmc"]], [6, 12], seeds=12)
    assert [(s.setting, s.trials) for s in summaries] == [
        ("resweep", 6), ("random", 6), ("qmc", 6), ("resweep", 12), ("random", 12), ("qmc", 12)]
    for s in summaries:
        assert 0 < s.p10_test <= s.median_test <= 0.9
        assert s.median_epochs < 4 * s.trials  # ASHA stopped some
    # each figure is over the same seeded sweeps, run again one by one here
    for s in summaries[:3]:
        tests = [simulate(rec, SETTINGS[s.setting], s.trials, SEED_BASE + seed).test_acc for seed in range(12)]
        assert s.mean_test == pytest.approx(sum(tests) / len(tests))
        assert s.median_test == pytest.approx(statistics.median(tests))
        assert s.se_test == pytest.approx(statistics.stdev(tests) / math.sqrt(len(tests)))
    # more trials find at least as good a model, per setting, in the median
    for name in ("resweep", "random", "qmc"):
        small, large = (s for s in summaries if s.setting == name)
        assert large.median_test >= small.median_test
    draws = {tuple(simulate(rec, SETTINGS["random"], 6, seed).trials) for seed in range(6)}
    assert len(draws) > 1, "each seed draws its own sweep"


def test_each_model_based_setting_starts_with_its_share_of_random_trials():
    """A quarter of the trials (2 to 10) for TPE and the Gaussian process, a half with no cap
    for tpe-half, a fixed count where the setting names one."""
    import optuna

    from sweeps.search import make_sampler

    quarter, half, fixed = SETTINGS["tpe-quarter"], SETTINGS["tpe-half"], SETTINGS["tpe-startup-10"]
    assert [quarter.startup_trials(n) for n in (4, 8, 20, 50, 100)] == [2, 2, 5, 10, 10]
    assert [half.startup_trials(n) for n in (4, 8, 20, 50)] == [2, 4, 10, 25]
    assert [fixed.startup_trials(n) for n in (8, 50)] == [10, 10]
    gp = make_sampler(SETTINGS["gp"], 20, seed=0)
    assert isinstance(gp, optuna.samplers.GPSampler) and gp._n_startup_trials == 5
    assert make_sampler(half, 20, seed=0)._n_startup_trials == 10


def test_curves_file_and_cli(tmp_path):
    path = tmp_path / "curves.json"
    meta = {"metric": "val_acc", "mode": "max", "max_epochs": 4, "search": SEARCH, "initial": {},
            "grace_period": 1, "reduction_factor": 2, "concurrency": 1}
    path.write_text(json.dumps({"meta": meta, "configs": [
        {"params": c.params, "values": c.values, "seconds": c.seconds, "test_acc": c.test_acc} for c in CONFIGS]}))
    assert len(load_recording(str(path)).configs) == 4
    out = CliRunner().invoke(app, ["simulate", str(path), "--trials", "3", "--seeds", "4",
                                   "--setting", "resweep", "--setting", "random"])
    assert out.exit_code == 0, out.output
    lines = out.output.strip().splitlines()
    assert "4 configurations of 4 epochs" in lines[0]
    assert lines[1].split()[:2] == ["setting", "trials"]
    assert [line.split()[0] for line in lines[2:]] == ["resweep", "random"]
    assert all(line.split()[1:3] == ["3", "4"] for line in lines[2:])


@pytest.mark.parametrize("args, message", [
    (["--setting", "bogus"], "unknown setting 'bogus'"),
    (["--trials", "500"], "too few for 500 trials"),
])
def test_cli_refuses_bad_input_in_one_line(tmp_path, args, message):
    path = tmp_path / "curves.json"
    meta = {"metric": "val_acc", "mode": "max", "max_epochs": 4, "search": SEARCH, "initial": {},
            "grace_period": 1, "reduction_factor": 2, "concurrency": 1}
    path.write_text(json.dumps({"meta": meta, "configs": [
        {"params": c.params, "values": c.values, "seconds": c.seconds, "test_acc": c.test_acc} for c in CONFIGS]}))
    out = CliRunner().invoke(app, ["simulate", str(path), *args])
    assert out.exit_code == 2 and message in out.output and "Traceback" not in out.output


def test_a_file_that_is_no_recording_is_named(tmp_path):
    bad = tmp_path / "notes.json"
    bad.write_text('{"meta": {}}')
    out = CliRunner().invoke(app, ["simulate", str(bad)])
    assert out.exit_code == 2 and "not a curves file" in out.output and "Traceback" not in out.output


def test_a_run_folder_without_early_stopping_is_a_recording(tmp_path):
    """A real sweep that trains every trial to the end (--no-early-stopping) is read as a
    recording: its trials' parameters, curves and test accuracies, then simulated."""
    path = preset(tmp_path, trials=3, epochs=2)
    runner = CliRunner()
    out = runner.invoke(app, ["run", path, "--local", "--no-early-stopping", "--storage", str(tmp_path / "runs"),
                              "--name", "full", "--seed", "1"])
    assert out.exit_code == 0, out.output
    rec = load_recording(str(tmp_path / "runs" / "full"))
    assert len(rec.configs) == 3 and rec.max_epochs == 2
    assert rec.initial == {"lr": 0.05, "weight_decay": 5.0e-4}
    assert any(c.params == rec.initial for c in rec.configs), "the initial configuration was trained"
    assert all(len(c.values) == 2 and 0 <= c.test_acc <= 1 for c in rec.configs)
    sim = runner.invoke(app, ["simulate", str(tmp_path / "runs" / "full"), "--trials", "2", "--seeds", "2",
                              "--setting", "resweep"])
    assert sim.exit_code == 0, sim.output
    assert sim.output.strip().splitlines()[-1].split()[:3] == ["resweep", "2", "2"]


def test_the_sweep_searches_with_the_setting_the_simulation_chose(tmp_path):
    import dataclasses

    import optuna

    from sweeps.engine.driver import make_searcher
    from sweeps.planner import describe_plan, make_plan
    from sweeps.presets import load_preset
    from sweeps.runfolder.plan import WarmStart
    from sweeps.search import default_setting

    initial = {"lr": 0.05, "weight_decay": 5e-4}  # the test preset searches these two
    plan = make_plan(load_preset(preset(tmp_path, trials=8, initial=initial)), overrides=[], samples=None,
                          concurrency=2, gpus=None, cpus=None, storage=str(tmp_path / "runs"), name="s", seed=3)
    chosen = default_setting(plan.trials)
    assert plan.search_setting == chosen == SETTINGS["resweep"]
    assert chosen.label in describe_plan(plan)
    searcher = make_searcher(plan, 2).searcher.searcher
    kinds = {"qmc": optuna.samplers.QMCSampler, "tpe": optuna.samplers.TPESampler,
             "random": optuna.samplers.RandomSampler}
    assert isinstance(searcher._sampler, kinds[chosen.sampler])
    assert searcher._points_to_evaluate == ([initial] if chosen.initial_first else [])
    # TPE where the search learns from trials it did not propose, or ranks several objectives
    warm = WarmStart("earlier", "p", "digits", [], [], {})
    assert dataclasses.replace(plan, warm_start=warm).search_setting == SETTINGS["tpe-quarter"]
    two = dataclasses.replace(plan, objectives={"val_acc": "max", "params": "min"})
    assert isinstance(make_searcher(two, 2).searcher.searcher._sampler, optuna.samplers.TPESampler)
    # a setting named as `sweep simulate` prints it
    random = make_searcher(dataclasses.replace(plan, setting="random-initial"), 2).searcher.searcher
    assert isinstance(random._sampler, optuna.samplers.RandomSampler)
    nsga2 = make_searcher(dataclasses.replace(two, setting="nsga2"), 2).searcher.searcher
    assert isinstance(nsga2._sampler, optuna.samplers.NSGAIISampler)


def test_the_default_turns_to_tpe_after_a_random_half_at_larger_budgets(tmp_path):
    """Sobol points up to DEFAULT_TPE_FROM trials, TPE after a random half from there, in the sweep
    and in the simulation alike (both build the sampler of the setting at the sweep's budget)."""
    import optuna

    from sweeps.engine.driver import make_searcher
    from sweeps.planner import make_plan
    from sweeps.presets import load_preset
    from sweeps.search import DEFAULT_TPE_FROM, make_sampler

    def plan_of(trials):
        return make_plan(load_preset(preset(tmp_path, trials=trials, initial={"lr": 0.05, "weight_decay": 5e-4})),
                         overrides=[], samples=None, concurrency=2, gpus=None, cpus=None,
                         storage=str(tmp_path / "runs"), name="s", seed=3)

    small, large = plan_of(DEFAULT_TPE_FROM - 1), plan_of(DEFAULT_TPE_FROM)
    assert small.search_setting == SETTINGS["resweep"] and large.search_setting == SETTINGS["tpe-half"]
    sampler = make_searcher(large, 2).searcher.searcher._sampler
    assert isinstance(sampler, optuna.samplers.TPESampler) and sampler._n_startup_trials == DEFAULT_TPE_FROM // 2
    assert isinstance(make_searcher(small, 2).searcher.searcher._sampler, optuna.samplers.QMCSampler)
    assert isinstance(make_sampler(SETTINGS["resweep"], DEFAULT_TPE_FROM, 0), optuna.samplers.TPESampler)
    assert make_searcher(large, 2).searcher.searcher._points_to_evaluate == [{"lr": 0.05, "weight_decay": 5e-4}]



@pytest.mark.parametrize("setting", [*SETTINGS, "nsga2"])
def test_every_setting_s_searcher_pickles_as_tune_saves_it_and_suggests_after(tmp_path, setting):
    """Tune pickles the searcher when a sweep starts and at each save of its state: a sampler
    that does not pickle (Optuna 5's NSGA-II holds a lock) ends the sweep before its first trial,
    or leaves a state that cannot resume."""
    import dataclasses

    from ray import cloudpickle

    from sweeps.engine.driver import make_searcher
    from sweeps.planner import make_plan
    from sweeps.presets import load_preset

    plan = make_plan(load_preset(preset(tmp_path, trials=8, initial={"lr": 0.05, "weight_decay": 5e-4})),
                     overrides=[], samples=None, concurrency=2, gpus=None, cpus=None,
                     storage=str(tmp_path / "runs"), name="s", seed=3)
    if setting == "nsga2":  # several objectives only
        plan = dataclasses.replace(plan, objectives={"val_acc": "max", "params": "min"})
    searcher = make_searcher(dataclasses.replace(plan, setting=setting), 2)
    searcher.suggest("t0")
    loaded = cloudpickle.loads(cloudpickle.dumps(searcher))
    assert set(loaded.suggest("t1")) == {"lr", "weight_decay"}


def test_a_plan_of_an_older_version_names_its_sampler_and_is_read_as_its_setting(tmp_path):
    """resweep.json before the settings were named held `sampler` (default | tpe | random |
    nsga2), and two settings had names with "seed" in them for the initial configuration: such run
    folders still read, each as the setting it meant."""
    import json

    from sweeps.planner import make_plan
    from sweeps.presets import load_preset
    from sweeps.runfolder.layout import plan_file
    from sweeps.runfolder.plan import SweepPlan

    plan = make_plan(load_preset(preset(tmp_path, trials=8)), overrides=[], samples=None, concurrency=2, gpus=None,
                     cpus=None, storage=str(tmp_path / "runs"), name="old", seed=3)
    plan.save()
    old_names = {("sampler", "tpe"): "tpe-quarter", ("sampler", "random"): "random-initial",
                 ("sampler", "nsga2"): "nsga2", ("sampler", "default"): "resweep",
                 ("setting", "random-seed"): "random-initial", ("setting", "tpe-no-seed"): "tpe-no-initial"}
    for (key, old), setting in old_names.items():
        fields = json.loads(open(plan_file(plan.path)).read())
        fields.pop("setting", None)
        fields[key] = old
        with open(plan_file(plan.path), "w") as f:
            f.write(json.dumps(fields))
        assert SweepPlan.load(plan.path).search_setting.name == setting, old
    # a setting the code names that does not exist is one line, before anything runs
    from sweeps.errors import SweepError

    with pytest.raises(SweepError, match="no search setting 'tpe'"):  # the old name: only plan files map it
        make_plan(load_preset(preset(tmp_path, trials=8)), overrides=[], samples=None, concurrency=2, gpus=None,
                  cpus=None, storage=str(tmp_path / "runs"), name="bad", seed=3, setting="tpe")


def test_two_objectives_rank_both_at_the_rungs_and_score_the_front(tmp_path):
    from dataclasses import replace

    from sweeps.sim.asha import Hypervolume, asha, pareto_points, trial_point

    # the last configuration is the least accurate at every epoch, and the cheapest
    costs = [400.0, 300.0, 200.0, 100.0]
    configs = [replace(c, others=[[cost] * 4]) for c, cost in zip(CONFIGS, costs)]
    objectives = {"val_acc": "max", "params": "min"}
    rec = Recording(SEARCH, {}, "val_acc", "max", 4, 1, 2.0, 1, configs, objectives=objectives)
    volume = Hypervolume([rec.curve(i) for i in range(4)], ["max", "min"])
    for rank_all in (True, False):
        cheapest_first_time = []
        for seed in range(6):
            result = simulate(rec, SETTINGS["random"], 4, seed, rank_all=rank_all)
            queue = iter([rec.curve(i) for i in result.trials])
            trained = asha(lambda q=queue: next(q, None), 1, 1, 2.0, 4,
                           objectives=["max", "min"] if rank_all else ())
            assert result.epochs == sum(trained)
            points = [trial_point(rec.curve(c), n, "max") for c, n in zip(result.trials, trained)]
            assert result.hypervolume == pytest.approx(volume(pareto_points(points, ["max", "min"])))
            if 3 in result.trials and result.trials.index(3) > 0:  # it met another trial at the rung
                cheapest_first_time.append(trained[result.trials.index(3)])
        assert cheapest_first_time
        if rank_all:  # never stopped: the best of its rung on one objective
            assert all(n == 4 for n in cheapest_first_time), cheapest_first_time
        else:  # ranked on accuracy alone, it is stopped at the first rung behind any other trial
            assert all(n == 1 for n in cheapest_first_time), cheapest_first_time

    path = tmp_path / "curves.json"
    meta = {"metric": "val_acc", "mode": "max", "max_epochs": 4, "search": SEARCH, "initial": {},
            "grace_period": 1, "reduction_factor": 2, "concurrency": 1, "objectives": objectives}
    path.write_text(json.dumps({"meta": meta, "configs": [
        {"params": c.params, "values": c.values, "seconds": c.seconds, "test_acc": c.test_acc,
         "objectives": {"params": c.others[0]}} for c in configs]}))
    assert load_recording(str(path)).curve(3).others == [[100.0] * 4]
    for rule, named in (("all-objectives", "multi-objective ASHA"), ("first-objective", "ASHA on val_acc")):
        out = CliRunner().invoke(app, ["simulate", str(path), "--trials", "4", "--seeds", "3", "--setting", "random",
                                       "--early-stopping", rule])
        assert out.exit_code == 0, out.output
        lines = out.output.strip().splitlines()
        assert f"objectives val_acc (max), params (min); {named}" in lines[0]
        assert lines[1].split()[-4:] == ["median", "hypervolume", "p10", "hypervolume"]
        assert float(lines[2].split()[-2]) > 0
