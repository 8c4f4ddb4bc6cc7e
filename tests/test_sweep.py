"""Real sweeps on real Ray (local instances and a two-node cluster on this machine) with real Optuna."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import crash, preset
from typer.testing import CliRunner

from analysis.cli import app as analysis_app
from sweeps.cli import app
from sweeps.runfolder.results import read_results, trained_rows
from sweeps.runfolder.run import load_run
from sweeps.runfolder.tunestate import experiment_state

pytestmark = pytest.mark.slow


def run_cli(*args):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_sweep_end_to_end_with_asha_and_the_initial_configuration_first(tmp_path, monkeypatch):
    storage = tmp_path / "my runs"  # a space in the path
    monkeypatch.chdir(tmp_path)
    result = run_cli("run", Path(preset(tmp_path)).name, "--local", "--storage", str(storage), "--name", "e2e")
    path = storage / "e2e"
    assert f"run: {path}" in result.output and "best trial" in result.output
    run = load_run(str(path))
    trials = run.trials
    print(trials[["trial_index", "status", "epochs_trained", "val_acc", "stopped_early", "lr"]].to_string())
    assert len(trials) == 8 and set(trials["status"]) == {"TERMINATED"}
    first = trials[trials["trial_index"] == 1].iloc[0]
    assert first["lr"] == pytest.approx(0.05) and first["weight_decay"] == pytest.approx(5e-4)
    assert trials["stopped_early"].any(), "ASHA stops trials in the space's bad regions"
    assert trials["epochs_trained"].sum() < 8 * 4
    assert trials["val_acc"].max() >= 0.9
    # every finished trial keeps a checkpoint of its best epoch, readable with weights_only
    for _, row in trials.iterrows():
        state = torch.load(Path(row["checkpoint"]) / "checkpoint.pt", weights_only=True)
        assert state["history"][-1]["val_acc"] == pytest.approx(row["val_acc"])  # ties: any best epoch
    # the Optuna study sits beside the results, for optuna-dashboard and the report
    import optuna

    study = optuna.load_study(study_name="e2e", storage=f"sqlite:///{path}/optuna.db")
    assert len(study.trials) == 8
    assert {t.state.name for t in study.trials} >= {"COMPLETE", "PRUNED"}
    # the csv table agrees with the run
    table = CliRunner().invoke(analysis_app, ["table", str(path), "--format", "csv"])
    assert table.exit_code == 0, table.output
    lines = table.output.strip().splitlines()
    header = lines[0].split(",")
    assert header[:4] == ["trial_id", "status", "epochs_trained", "val_acc"] and "lr" in header
    assert len(lines) == 9
    status = run_cli("status", str(path))
    assert "stopped_early" in status.output and status.output.count("TERMINATED") == 8
    # the summary says what became of the trials, and how to train the best one alone
    early = int(trials["stopped_early"].sum())
    assert f"trials: 8 - {8 - early} trained to the end, {early} stopped early by ASHA, 0 errored" in result.output
    command = shlex.split(result.output.split("train it alone: ")[1].splitlines()[0])
    assert command[:2] == ["sweep", "train"]
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the preset was given relative to another folder
    alone = run_cli(*command[1:], "--out", str(tmp_path / "alone"))
    assert "test: acc" in alone.output
    config = yaml.safe_load((tmp_path / "alone" / "config.yaml").read_text())
    best = trials.sort_values("val_acc", ascending=False).iloc[0]
    for key in run.search_keys:
        assert config[key] == (pytest.approx(best[key]) if isinstance(config[key], float) else best[key]), key
    # a second run under the same name would mix two sweeps: refused
    again = CliRunner().invoke(app, ["run", preset(tmp_path), "--local", "--storage", str(storage), "--name", "e2e"])
    assert again.exit_code == 2 and "already holds a sweep" in again.output


def test_concurrency_caps_the_trials_running_at_once_below_what_resources_allow(tmp_path):
    # 2 CPUs at 0.5 per trial would fit 4 at once; --concurrency 1 must keep it to one
    result = run_cli("run", preset(tmp_path, trials=3, epochs=1), "--local", "--storage", str(tmp_path / "runs"),
                     "--concurrency", "1", "--cpus-per-trial", "0.5")
    run = load_run(re.search(r"run: (\S+)", result.output).group(1))
    spans = sorted((row["finished_at"] - row["epoch_time_s"], row["finished_at"])
                   for _, row in run.history.iterrows())  # 1 epoch per trial: the span it trained
    assert len(spans) == 3
    overlaps = sum(later[0] < earlier[1] - 0.01 for earlier, later in zip(spans, spans[1:]))
    assert overlaps == 0, spans
    assert "1 at a time" in result.output


def test_a_crashing_trial_is_retried_then_errored_and_the_sweep_finishes(crashed_run):
    trials = load_run(str(crashed_run)).trials
    print(trials[["trial_index", "status", "epochs_trained", "retries", "image_size", "error"]].to_string())
    errored = trials[trials["status"] == "ERROR"]
    assert len(errored) >= 1 and set(errored["image_size"]) == {4}
    assert (errored["retries"] >= 2).all(), "retried before it is given up"
    assert "RuntimeError" in errored.iloc[0]["error"] or "size" in errored.iloc[0]["error"]
    assert (trials["status"] == "TERMINATED").sum() >= 1


def test_a_two_node_cluster_runs_trials_on_both_nodes(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from sweeps.engine.driver import run_sweep
    from sweeps.planner import make_plan
    from sweeps.presets import load_preset

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        plan = make_plan(load_preset(preset(tmp_path, trials=4, epochs=2)), overrides=[], samples=None,
                              concurrency=2, gpus=None, cpus=None, storage=str(tmp_path / "shared"), name="two",
                              seed=None)
        summary = run_sweep(plan, address=cluster.address)
    finally:
        ray.shutdown()
        cluster.shutdown()
    trials = load_run(summary.path).trials
    print(trials[["trial_index", "status", "epochs_trained", "node"]].to_string())
    assert set(trials["status"]) == {"TERMINATED"}
    assert trials["node"].nunique() == 2


def wait_for(predicate, timeout=240, interval=0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def test_ctrl_c_saves_the_sweep_says_how_to_resume_and_exits_130(tmp_path):
    path = preset(tmp_path, trials=4, epochs=6)
    run_path = tmp_path / "runs" / "stopped"
    sweep_bin = str(Path(sys.executable).parent / "sweep")
    driver = subprocess.Popen([sweep_bin, "run", path, "--local", "--storage", str(tmp_path / "runs"), "--name",
                               "stopped"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True)
    try:
        # a trial writes its checkpoints itself, as each epoch ends
        assert wait_for(lambda: any(run_path.glob("trial_*/checkpoint_*/checkpoint.pt"))), "no trial checkpointed"
        driver.send_signal(signal.SIGINT)  # what Ctrl-C sends the driver
        output = driver.communicate(timeout=120)[0].decode()
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 130, output[-3000:]
    assert f"continue with: sweep resume {run_path}" in output and "Tuner.restore" not in output
    assert re.search(r"trials: 4 - .*\d+ (unfinished|not started)", output)
    resumed = run_cli("resume", str(run_path), "--local")
    assert "interrupted" not in resumed.output
    assert set(load_run(str(run_path)).trials["status"]) == {"TERMINATED"}


def test_killed_driver_then_resume_finishes_without_rerunning_finished_trials(tmp_path):
    # no early stopping here, so every trial owes all its epochs: the accounting is exact
    # 6 trials, 2 at a time: killed with about 3 started, a few left unstarted even where Tune's
    # state lags the trials by an epoch or two (the budget below must leave one unstarted)
    # (at 32 px an epoch takes about 0.7 s here: at 16 px, 0.2 s, the driver got through a trial
    # between the watcher's look and the kill)
    path = preset(tmp_path, trials=6, epochs=6, sweep={"grace_period": 6}, train={"image_size": 32})
    run_path = tmp_path / "runs" / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1", TUNE_GLOBAL_CHECKPOINT_S="1")
    sweep_bin = str(Path(sys.executable).parent / "sweep")
    driver = subprocess.Popen([sweep_bin, "run", path, "--local", "--storage", str(tmp_path / "runs"), "--name",
                               "killed", "--price-per-hour", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=env, start_new_session=True)

    def newest(folder: Path) -> int:  # the newest epoch a trial stored: it writes its checkpoints itself
        return max((int(p.parent.name.rsplit("_", 1)[1]) for p in folder.glob("checkpoint_*/checkpoint.pt")),
                   default=0)

    def one_done_one_midway():
        # read from the trials' checkpoints: the result files in the run folder lag them by a
        # second or more, and epochs here can take 0.2 s (a driver killed "early" by Tune's state
        # had started all six trials)
        stored = [newest(folder) for folder in run_path.glob("trial_*")]
        return 6 in stored and any(1 <= n <= 3 for n in stored)

    try:
        assert wait_for(one_done_one_midway, interval=0.05), \
            driver.stdout.read().decode()[-3000:] if driver.poll() else "timeout"
    finally:
        crash(driver)  # the driver and the Ray instance it started: a crashed laptop
    def rows(t):
        return [r for r in read_results(str(run_path / f"trial_{t}"), keep_repeats=True) if not r.get("failure")]

    before = {t: rows(t) for t in experiment_state(str(run_path))}
    finished = {t for t, s in experiment_state(str(run_path)).items() if s["status"] == "TERMINATED"}
    # the epochs the killed driver's unfinished trials still owe, and those it trained that the run
    # folder's result files lack (the resumed trials replay them, and the budget counts them spent)
    owed = sum(max(0, 6 - newest(run_path / f"trial_{t}")) for t, trained in before.items()
               if t not in finished and newest(run_path / f"trial_{t}"))
    lagged = sum(max(0, newest(folder) - len(read_results(str(folder)))) for folder in run_path.glob("trial_*"))

    # A budget: the resumed sweep counts what the killed driver spent. One below what that spent
    # plus one more epoch is refused before anything starts; one of 2.5 epochs more stops the
    # trials after the epoch that reaches it (paused, their checkpoints kept), within one epoch of
    # each trial running, and the sweep ends with the `sweep resume --budget` that goes on.
    killed = load_run(str(run_path))
    spent, per_epoch = killed.trial_hours, killed.epoch_s()
    assert spent > 0 and per_epoch
    small = CliRunner().invoke(app, ["resume", str(run_path), "--local", "--budget",
                                     f"{(spent + 0.5 * per_epoch / 3600) * 2:.6g}usd"])
    assert small.exit_code != 0 and len(small.output.strip().splitlines()) == 1, small.output
    assert "one epoch of a trial costs about" in small.output and "spent" in small.output
    assert {t: rows(t) for t in before} == before and load_run(str(run_path)).plan.budget == ""
    limit = (spent + (lagged + 2.5) * per_epoch / 3600) * 2  # USD at $2 per CPU-hour
    stopped = run_cli("resume", str(run_path), "--local", "--budget", f"{limit:.6g}usd")
    assert "budget reached" in stopped.output and "interrupted" not in stopped.output, stopped.output
    at_limit = load_run(str(run_path))
    slowest = max(float(r["epoch_time_s"]) for t in at_limit.trials["trial_id"] for r in rows(t)
                  if not r.get("replayed"))
    # what this driver trained fits what was left of the limit, but for one epoch of each of the 2
    # trials running at once. Before it: the killed driver's epochs, those it never copied to the run
    # folder too (the resumed trials' replays stand for them, and the driver counts them as spent)
    rewritten = [t for t in at_limit.trials["trial_id"] if rows(t) != before.get(t)]  # the trials it ran
    trained_here = sum(float(r["epoch_time_s"]) for t in rewritten for r in rows(t) if not r.get("replayed")) / 3600
    truly_before = at_limit.trial_hours - trained_here
    print(f"budget ${limit:.4g}: spent ${at_limit.spent:.4g} (before: ${spent * 2:.4g} seen at the kill, "
          f"${truly_before * 2:.4g} in all; epochs up to {slowest:.2f} s)")
    assert spent <= truly_before + 1e-9 and trained_here > 0
    assert trained_here <= max(limit / 2 - truly_before, 0) + 2 * slowest / 3600
    if owed >= 4:  # more than the 2.5 epochs the budget leaves: a trial is paused, not finished
        assert "PAUSED" in set(at_limit.trials["status"]), (owed, at_limit.trials[["trial_id", "status"]])
    # no new trial started whose six epochs would pass it (the killed driver's trials go on): a trial
    # of the plan never started
    assert at_limit.outcome().not_started + (at_limit.trials["epochs_trained"] == 0).sum() >= 1
    assert f"{at_limit.plan.amount(at_limit.trial_hours)} of " in stopped.output
    go_on = re.search(r"to go on: (sweep resume \S+ --budget (\S+))", stopped.output)
    assert go_on, stopped.output
    assert float(go_on.group(2).removesuffix("usd")) > at_limit.spent  # it names more than was spent
    result = run_cli("resume", str(run_path), "--local", "--budget", f"{limit * 10:.6g}usd")
    assert "budget reached" not in result.output, result.output
    trials = load_run(str(run_path)).trials
    print(trials[["trial_id", "status", "epochs_trained", "retries"]].to_string(), finished)
    assert len(trials) == 6 and set(trials["status"]) == {"TERMINATED"}
    short = {t: [(r["epoch"], bool(r.get("replayed"))) for r in rows(t)] for t, n in
             zip(trials["trial_id"], trials["epochs_trained"]) if n != 6}
    assert not short, (short, {t: sorted(p.name for p in (run_path / f"trial_{t}").glob("checkpoint_*"))
                               for t in short}, at_limit.trials[["trial_id", "status", "epochs_trained"]])
    after = {t: rows(t) for t in trials["trial_id"]}
    for t in finished:
        assert after[t] == before[t], f"finished trial {t} ran again"
    twice = 0
    for t, reported in after.items():
        # a restarted trial first reports the epochs of its checkpoint again (`replayed`), those
        # whose results the killed driver had not yet copied to the run folder among them
        assert {int(r["epoch"]) for r in reported} == set(range(1, 7)), f"trial {t} misses an epoch"
        trained = [int(r["epoch"]) for r in reported if not r.get("replayed")]
        assert len(trained) - len(set(trained)) <= 1, f"trial {t} trained epochs twice: {trained}"
        twice += len(trained) - len(set(trained))
    print(f"epochs trained twice: {twice} over {len(after)} trials")
    assert "best trial" in result.output
    # the money counts every epoch trained, by either driver, once; replays cost nothing
    run = load_run(str(run_path))
    trained_s = sum(float(r["epoch_time_s"]) for reported in after.values() for r in trained_rows(reported))
    assert run.plan.price_per_hour == 2 and run.spent == pytest.approx(trained_s / 3600 * 2)
    killed_s = sum(float(r["epoch_time_s"]) for reported in before.values() for r in reported if not r.get("replayed"))
    assert 0 < killed_s < trained_s
    # and every epoch the killed driver trained counts, though a resumed driver writes a trial's
    # result file anew: its replay stands for it, with its own time
    for t, reported in before.items():
        for r in reported:
            if not r.get("replayed"):
                assert any(int(a["epoch"]) == int(r["epoch"]) and a["epoch_time_s"] == r["epoch_time_s"]
                           for a in after[t]), f"trial {t}: epoch {r['epoch']} of the killed driver is not counted"
    assert f"spent: ${run.spent:.3g} (" in result.output  # the resumed sweep's summary: both drivers' epochs
    status = run_cli("status", str(run_path))
    assert f"${run.spent:.3g} at $2 per CPU-hour (--price-per-hour)" in status.output


def test_a_driver_killed_as_a_trial_ends_leaves_that_trials_epochs_whole(tmp_path):
    """Tune copies result files to the run folder with its own snapshots (here once a minute), while
    the archived state a resume reads is written as soon as the next trial is added: a driver killed
    right after that archive must leave the finished trial's every epoch in the run folder, since
    a finished trial never runs again (found by this file's killed-driver test: a trial TERMINATED
    with 5 of its 6 epochs, its sixth checkpoint kept)."""
    from sweeps.engine.archive import _read_archive
    from sweeps.runfolder.layout import is_state_file

    epochs = 3
    path = preset(tmp_path, trials=3, epochs=epochs, sweep={"grace_period": epochs, "concurrency": 1})
    run_path = tmp_path / "runs" / "ending"
    env = dict(os.environ, TUNE_GLOBAL_CHECKPOINT_S="60")
    sweep_bin = str(Path(sys.executable).parent / "sweep")
    driver = subprocess.Popen([sweep_bin, "run", path, "--local", "--storage", str(tmp_path / "runs"), "--name",
                               "ending"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                              start_new_session=True)
    ended: list[str] = []

    def archive_says_one_ended() -> bool:
        members = _read_archive(str(run_path))
        if members:
            state = json.loads(members[max(n for n in members if is_state_file(n))])
            metas = [json.loads(e[0]) if isinstance(e[0], str) else e[0] for e in state.get("trial_data", [])]
            ended[:] = [m["trial_id"] for m in metas if m.get("status") == "TERMINATED"]
        return bool(ended)

    try:
        assert wait_for(archive_says_one_ended, interval=0.05), \
            driver.stdout.read().decode()[-3000:] if driver.poll() is not None else "timeout"
    finally:
        crash(driver)  # the driver and its Ray instance, the moment the archive says so
    stored = {t: [int(r["epoch"]) for r in read_results(str(run_path / f"trial_{t}"))] for t in ended}
    assert all(e == list(range(1, epochs + 1)) for e in stored.values()), stored
    run_cli("resume", str(run_path), "--local")
    trials = load_run(str(run_path)).trials
    assert len(trials) == 3 and set(trials["status"]) == {"TERMINATED"}, trials[["trial_id", "status"]]
    assert set(trials["epochs_trained"]) == {epochs}, trials[["trial_id", "epochs_trained"]]
    for t in ended:  # kept as the killed driver stored them, never trained again
        assert [int(r["epoch"]) for r in read_results(str(run_path / f"trial_{t}"))] == stored[t]


def test_state_files_copied_in_part_before_a_crash_still_resume_to_the_whole_plan(tmp_path):
    """Tune copies its state files to the run folder one by one; a driver killed mid-copy
    leaves a trial list older than the searcher's count. Resumed from those files alone, the
    sweep ended trials short of its plan (read as an interruption, exit 130; with one trial at a
    time it never ended: the searcher held the lost trial's place). Resumed from the archive the
    driver stores whole, it runs the whole plan."""

    path = preset(tmp_path, trials=5, epochs=4)
    run_path = tmp_path / "runs" / "torn"
    env = dict(os.environ, PYTHONUNBUFFERED="1", TUNE_GLOBAL_CHECKPOINT_S="1")
    driver = subprocess.Popen([str(Path(sys.executable).parent / "sweep"), "run", path, "--local", "--storage",
                               str(tmp_path / "runs"), "--name", "torn"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env=env, start_new_session=True)
    versions = {}  # the trial lists Tune copied to the run folder, by trial count

    def three_trials_listed():
        for state in run_path.glob("experiment_state-*.json"):
            try:
                versions.setdefault(len(json.loads(state.read_text())["trial_data"]), state.read_text())
            except (ValueError, OSError):
                pass
        return max(versions, default=0) >= 3

    try:
        assert wait_for(three_trials_listed), "no third trial"
    finally:
        crash(driver)
    older = versions[min(versions)]
    assert json.loads(older)["trial_data"] and min(versions) < max(versions)
    next(run_path.glob("experiment_state-*.json")).write_text(older)  # the newer searcher state stays
    whole = run_cli("resume", str(run_path), "--local")
    trials = load_run(str(run_path)).trials
    assert len(trials) == 5 and set(trials["status"]) == {"TERMINATED"} and "note: the sweep ended" not in whole.output
