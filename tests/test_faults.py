"""Faults and safety: lost workers, halted trials, storage that cannot take results, half-written
files, and what is never done with user input. Each test prints the figures it measured."""

import pickle
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import preset, tiny
from typer.testing import CliRunner

from analysis.cli import app as analysis_app
from sweeps.cli import app
from sweeps.runfolder.results import read_results
from sweeps.runfolder.run import load_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_spot_notice_drains_the_node_and_its_trial_moves_with_no_epoch_lost(tmp_path, monkeypatch):
    """AWS's two-minute interruption notice, from a metadata service on 127.0.0.1 that gives it to
    one node only: the trial there stores the epoch it is in, leaves, and goes on elsewhere; the
    node is drained; the move is no failure and no epoch is trained twice."""
    import ray
    from fakemetadata import FakeMetadata
    from ray.cluster_utils import Cluster
    from ray.core.generated.common_pb2 import NodeDeathInfo

    from sweeps.engine.driver import run_sweep
    from sweeps.engine.notice import NOTICE_URL_ENV, POLL_ENV
    from sweeps.planner import make_plan
    from sweeps.presets import load_preset

    epochs = 6
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "1")
    monkeypatch.delenv(NOTICE_URL_ENV, raising=False)
    monkeypatch.setenv(POLL_ENV, "0.2")  # the test's epochs take a second, a cloud's minutes
    metadata = FakeMetadata().start()
    path = preset(tmp_path, trials=3, epochs=epochs, sweep={"grace_period": epochs})
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "env_vars": {NOTICE_URL_ENV: metadata.aws_url("head")}})
    doomed = cluster.add_node(num_cpus=1, env_vars={NOTICE_URL_ENV: metadata.aws_url("doomed")})
    cluster.add_node(num_cpus=1, env_vars={NOTICE_URL_ENV: metadata.aws_url("spare")})
    cluster.wait_for_nodes()
    plan = make_plan(load_preset(path), overrides=[], samples=None, concurrency=3, gpus=None, cpus=None,
                          storage=str(tmp_path / "shared"), name="noticed", seed=None)
    run_path = Path(plan.path)
    noticed: dict = {}

    def notify():  # the cloud's notice, while a trial of the doomed node is midway
        deadline = time.time() + 240
        while time.time() < deadline and not noticed:
            for trial_dir in run_path.glob("trial_*"):
                results = read_results(str(trial_dir))
                if results and results[-1].get("node_id") == doomed.node_id and 1 <= len(results) < epochs - 2:
                    noticed.update(trial=trial_dir.name[len("trial_"):], epochs=len(results), at=time.time())
                    metadata.give_notice("doomed")
                    return
            time.sleep(0.2)

    watcher = threading.Thread(target=notify, daemon=True)
    watcher.start()
    try:
        summary = run_sweep(plan, address=cluster.address)
        node = next(n for n in ray.nodes() if n["NodeID"] == doomed.node_id)
    finally:
        watcher.join(5)
        ray.shutdown()
        cluster.shutdown()
        metadata.stop()
    assert noticed, "no trial ran on the node to take back"
    trials = load_run(summary.path).trials.set_index("trial_id")
    every = {t: read_results(str(run_path / f"trial_{t}"), keep_repeats=True) for t in trials.index}
    trained = [r for r in every[noticed["trial"]] if not r.get("replayed")]
    after = [r for rows in every.values() for r in rows if not r.get("replayed")
             and r.get("node_id") == doomed.node_id and r["finished_at"] > metadata.told["doomed"]]
    print(f"trial {noticed['trial']} heard the notice after {noticed['epochs']} epochs; epochs trained "
          f"{len(trained)} of {epochs}; the node read it {metadata.told['doomed'] - noticed['at']:.1f} s later and "
          f"finished {len(after)} epoch(s) after; "
          f"retries {int(trials['retries'].sum())}, node losses {int(trials['node_losses'].sum())}; "
          f"reads {metadata.reads}")
    assert set(trials["status"]) == {"TERMINATED"} and (trials["epochs_trained"] == epochs).all()
    # drained as preempted: nothing new placed there, and once idle its raylet left by itself
    assert node["DeathReason"] == NodeDeathInfo.AUTOSCALER_DRAIN_PREEMPTED, node
    assert node["DeathReasonMessage"].startswith("cloud notice (terminate)"), node
    assert metadata.reads.get("head") and metadata.reads.get("spare"), "every node reads its own notice"
    assert not metadata.tokenless, "the notice is read with an IMDSv2 token"
    assert sorted(int(r["epoch"]) for r in trained) == list(range(1, epochs + 1)), \
        "the epoch it was in was stored before it left: none trained twice, none missing"
    # counted from when the node read the notice (its watcher's poll comes late on a loaded machine)
    assert len(after) <= 1, "after the notice, the node only finishes the epoch it was in"
    assert trials.loc[noticed["trial"], "node_losses"] >= 1 and int(trials["retries"].sum()) == 0


@pytest.mark.slow
def test_a_reused_actor_whose_node_is_lost_before_its_reset_moves_the_waiting_trial_elsewhere(tmp_path):
    """A trial waiting to start is given the cached actor of a trial that ended, and that actor's
    node dies as the trial's reset reaches it (its raylet SIGKILLed, as a reclaim looks). Tune
    alone marks the waiting trial ERROR with no retry spent (seen in a chaos run); here it starts
    again on the other node, and the loss counts as a node loss, not a failure."""
    import os
    import signal

    import ray
    from ray import tune
    from ray.cluster_utils import Cluster

    from sweeps.engine.reclaim import only_the_trials_own_failures_counted

    marker = tmp_path / "struck"

    class Reused(tune.Trainable):  # pickled by value: it lives in this test only
        def setup(self, config):
            self.steps = 0

        def step(self):
            self.steps += 1
            return {"steps": self.steps, "node_id": ray.get_runtime_context().get_node_id()}

        def save_checkpoint(self, checkpoint_dir):
            Path(checkpoint_dir, "steps").write_text(str(self.steps))

        def load_checkpoint(self, checkpoint_dir):
            self.steps = int(Path(checkpoint_dir, "steps").read_text())

        def reset_config(self, new_config):
            if not marker.exists():  # the first reset only: strike this actor's node
                raylet = os.getppid()
                with open(f"/proc/{raylet}/cmdline", "rb") as f:
                    name = f.read().split(b"\0")[0]
                marker.write_text(f"{raylet} {name.decode()}")
                os.kill(raylet, signal.SIGKILL)
                os._exit(1)
            self.steps = 0
            return True

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        ray.init(address=cluster.address)
        with only_the_trials_own_failures_counted():
            tuner = tune.Tuner(Reused, param_space={"x": tune.grid_search([1, 2, 3, 4])},
                               tune_config=tune.TuneConfig(reuse_actors=True),  # 2 at a time: 2 CPUs
                               run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), stop={"steps": 2},
                                                         failure_config=tune.FailureConfig(max_failures=0),
                                                         verbose=0))
            results = tuner.fit()
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert marker.exists(), "no actor was reused, so nothing was struck"
    assert "raylet" in marker.read_text(), marker.read_text()
    trials = [r.metrics for r in results]
    losses = [getattr(t.run_metadata, "node_losses", 0) for t in tuner._local_tuner._experiment_analysis.trials] \
        if hasattr(tuner, "_local_tuner") else None
    print(f"struck {marker.read_text()}; errors {results.num_errors}; node losses {losses}; "
          f"nodes {[t.get('node_id', '')[:8] for t in trials]}")
    assert results.num_errors == 0, [r.error for r in results if r.error]
    assert [t["steps"] for t in trials] == [2, 2, 2, 2]


def test_the_cloud_notice_is_read_as_aws_and_gcp_give_it_and_a_silent_service_is_none():
    from fakemetadata import FakeMetadata

    from sweeps.engine.notice import NoticeWatcher, read_notice

    metadata = FakeMetadata().start()
    try:
        aws, gcp = metadata.aws_url("a"), metadata.gcp_url("a")
        assert read_notice(aws) is None and read_notice(gcp) is None and not metadata.tokenless
        heard = []
        watcher = NoticeWatcher(aws, on_notice=heard.append)
        watcher.poll_s = 0.05
        watcher.start()
        metadata.give_notice("a", lead_s=120)
        notice = read_notice(aws)
        assert notice.action == "terminate" and 100 < notice.seconds_left() <= 120  # the time AWS gives
        assert read_notice(gcp).action == "preempted" and read_notice(metadata.gcp_url("b")) is None
        for _ in range(100):
            if heard:
                break
            time.sleep(0.05)
        assert heard and watcher.heard == heard[0], "the watcher hears it once, in its own thread"
    finally:
        metadata.stop()
    started = time.monotonic()
    with pytest.raises(OSError):  # nothing listens there any more: the trial goes on, asking again later
        read_notice(aws)
    assert time.monotonic() - started < 5


@pytest.mark.slow
def test_a_diverging_trial_is_recorded_once_and_the_sweep_goes_on(tmp_path):
    path = preset(tmp_path, trials=3, epochs=2, search={"lr": {"choice": [0.05, 1.0e+30]}}, initial={"lr": 1.0e+30})
    result = CliRunner().invoke(app, ["run", path, "--local", "--storage", str(tmp_path / "runs"), "--name", "nan"])
    assert result.exit_code == 0, result.output
    trials = load_run(str(tmp_path / "runs" / "nan")).trials
    print(trials[["trial_index", "status", "epochs_trained", "failure", "retries", "lr"]].to_string())
    diverged = trials[trials["failure"] == "diverged"]
    assert len(diverged) >= 1 and (diverged["lr"] > 1).all()
    assert (diverged["retries"] == 0).all() and (diverged["status"] == "TERMINATED").all()
    assert (diverged["epochs_trained"] == 0).all(), "it stopped in its first epoch"
    assert "loss diverged" in diverged.iloc[0]["error"]
    assert ((trials["failure"] == "") & (trials["epochs_trained"] == 2)).any(), "the others finished"
    assert "best trial" in result.output and "1e+30" not in result.output.split("best trial")[1].split("\n")[1]


def test_gpu_out_of_memory_is_reported_with_the_batch_size(monkeypatch):
    import trainer.loop as loop
    from trainer import OutOfMemory, train

    def exhausted(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(loop, "train_one_epoch", exhausted)
    with pytest.raises(OutOfMemory) as err:
        train(tiny(batch_size=48))
    assert "out of memory at batch_size=48" in str(err.value) and err.value.kind == "out of memory"


def test_storage_that_cannot_take_results_fails_before_any_trial(tmp_path, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(app, ["run", "quickstart", "--local", "--storage", str(blocker / "runs")])
    assert result.exit_code == 2 and "error: results folder: cannot write to" in result.output
    monkeypatch.setenv("RESWEEP_MIN_FREE_MB", str(10**12))  # more than any disk: a full disk, as far as we know
    result = CliRunner().invoke(app, ["run", "quickstart", "--local", "--storage", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "MiB free at" in result.output and "--storage elsewhere" in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir()), "nothing was started"
    print(result.output.strip())


@pytest.mark.slow
def test_half_written_files_never_break_analysis(crashed_run, tmp_path):
    run = tmp_path / "copy of run"
    shutil.copytree(crashed_run, run)
    before = load_run(str(run)).trials
    result_file = next(p for p in run.glob("trial_*/result.json") if p.read_text().count("\n") >= 2)
    content = result_file.read_text()
    result_file.write_text(content + content.splitlines()[-1][:40])  # a line cut off mid-write
    states = sorted(run.glob("experiment_state-*.json"))
    (run / "experiment_state-9999-12-31_23-59-59.json").write_text(states[-1].read_text()[:100])  # cut off too
    after = load_run(str(run)).trials
    assert len(after) == len(before) and list(after["epochs_trained"]) == list(before["epochs_trained"])
    table = CliRunner().invoke(analysis_app, ["table", str(run), "--format", "csv"])
    assert table.exit_code == 0 and len(table.output.strip().splitlines()) == len(before) + 1


def _project_sources():
    return [p for d in ("trainer", "sweeps", "analysis", "benchmarks") for p in (ROOT / d).rglob("*.py")]


def test_checkpoints_are_only_read_weights_only_and_yaml_only_safely():
    offenders = []
    for path in _project_sources():
        text = path.read_text()
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            if "weights_only=True" not in call:
                offenders.append(f"{path.name}: {call}")
        if re.search(r"yaml\.(load|unsafe_load|full_load)\(", text) or "yaml.Loader" in text:
            offenders.append(f"{path.name}: unsafe YAML load")
        if re.search(r"(?<![\w.])(eval|exec)\(", text) or "pickle.load" in text:
            offenders.append(f"{path.name}: evaluates or unpickles input")
    assert not offenders, offenders


def test_a_checkpoint_with_code_in_it_is_refused(tmp_path):
    import os

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    torch.save({"model": Payload()}, tmp_path / "checkpoint.pt")
    from trainer.checkpoint import load_checkpoint

    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_checkpoint(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_missing_data_stops_a_local_sweep_before_any_trial(tmp_path):
    where = tmp_path / "empty"
    result = CliRunner().invoke(app, ["run", "quickstart", "--local", "--storage", str(tmp_path / "runs"),
                                      "--set", "dataset=flowers5", "--data-dir", str(where)])
    assert result.exit_code == 2 and f"error: flowers5: no data at {where}" in result.output
    assert "Traceback" not in result.output
    assert not list((tmp_path / "runs").glob("*/trial_*")), "no trial was started"


@pytest.mark.slow
def test_a_sweep_in_which_no_trial_finishes_exits_1(tmp_path):
    path = preset(tmp_path, trials=1, epochs=1, search={"image_size": {"choice": [4]}}, initial={"image_size": 4})
    result = CliRunner().invoke(app, ["run", path, "--local", "--storage", str(tmp_path / "runs"), "--name", "bad"])
    assert result.exit_code == 1, result.output
    assert "no trial finished" in result.output and "sweep status" in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_a_gpu_preset_on_a_machine_without_one_says_how_to_run_on_the_cpu(tmp_path):
    result = CliRunner().invoke(app, ["run", "flowers-r50", "--local", "--storage", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "asks for 1 GPU per trial and this machine has none; pass --gpus-per-trial 0" in result.output
    too_many = CliRunner().invoke(app, ["run", "quickstart", "--local", "--storage", str(tmp_path / "runs"),
                                        "--cpus-per-trial", "4096"])
    assert too_many.exit_code == 2 and "asks for 4096 CPUs per trial" in too_many.output
