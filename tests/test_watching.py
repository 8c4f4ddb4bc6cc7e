"""Where users watch a sweep: TensorBoard (event files read with TensorBoard's own reader),
MLflow (a SQLite tracking store read back with MLflow's client), Weights & Biases (offline
mode, its run files read), optuna-dashboard (its own web app serving the study), the live
progress line, `sweep status --watch`, and the report's fixes."""

import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sweeps.cli import app
from sweeps.engine.progress import SweepProgress
from sweeps.runfolder.results import read_results
from sweeps.runfolder.run import load_run
from sweeps.runfolder.tunestate import experiment_state

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """The 12-trial quickstart (2 epochs at most), with MLflow and W&B on, its output not a terminal."""
    root = tmp_path_factory.mktemp("tracked")
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", WANDB_CONFIG_DIR=str(root / "wandb-config"),
               WANDB_CACHE_DIR=str(root / "wandb-cache"), WANDB_DATA_DIR=str(root / "wandb-data"),
               PYTHONUNBUFFERED="1")
    mlflow_uri = f"sqlite:///{root / 'mlflow.db'}"
    out = subprocess.run([sys.executable, "-m", "sweeps.cli", "run", "quickstart", "--local", "--storage",
                          str(root / "runs"), "--name", "q", "--max-epochs", "2", "--seed", "0", "--mlflow",
                          mlflow_uri, "--wandb", "resweep-tests"], cwd=root, env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return SimpleNamespace(path=root / "runs" / "q", output=out.stdout + out.stderr, mlflow=mlflow_uri)


def epochs_of(run_path: Path) -> dict[str, dict[int, dict]]:
    """trial id -> epoch -> its row in result.json (first reports; the ones the trial trained)."""
    states = experiment_state(str(run_path))
    return {t: {int(r["epoch"]): r for r in read_results(str(run_path / s["folder"])) if not r.get("failure")}
            for t, s in states.items()}




@pytest.mark.slow
def test_a_12_trial_sweep_prints_under_15_lines_and_no_third_party_line(tracked_run):
    lines = [line for line in tracked_run.output.splitlines() if line.strip()]
    print("\n".join(lines))
    assert len(lines) < 15, lines
    for noise in ("A new study created", "Token authentication", "WARNING", "INFO", "core_worker", "wandb:"):
        assert noise not in tracked_run.output, noise
    progress = [line for line in lines if " trials: " in line and line.startswith("[")]
    assert progress, "a progress line"
    assert all(line.count("/12 trials") == 1 for line in progress)


@pytest.mark.slow
def test_tensorboard_reads_every_trials_epochs_under_stable_tags(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    results = epochs_of(tracked_run.path)
    states = experiment_state(str(tracked_run.path))
    assert len(results) == 12
    for trial_id, rows in results.items():
        events = EventAccumulator(str(tracked_run.path / states[trial_id]["folder"]))
        events.Reload()
        tags = set(events.Tags()["scalars"])
        assert {"loss/train", "loss/val", "accuracy/train", "accuracy/val", "learning_rate"} <= tags, tags
        for tag, key in (("accuracy/val", "val_acc"), ("loss/train", "train_loss"), ("learning_rate", "epoch_lr")):
            logged = {e.step: e.value for e in events.Scalars(tag)}
            assert logged.keys() == rows.keys(), (trial_id, tag)
            for epoch, row in rows.items():
                assert logged[epoch] == pytest.approx(row[key], rel=1e-6), (trial_id, tag, epoch)


@pytest.mark.slow
def test_mlflow_holds_a_run_per_trial_with_its_parameters_and_epochs(tracked_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracked_run.mlflow)
    experiment = client.get_experiment_by_name("q")  # grouped by the sweep's name
    runs = client.search_runs([experiment.experiment_id])
    results = epochs_of(tracked_run.path)
    trials = load_run(str(tracked_run.path)).trials.set_index("trial_id")
    assert len(runs) == 12
    for run in runs:
        trial_id = run.data.tags["trial_name"].rsplit("_", 1)[1]
        assert run.data.tags["resweep.sweep"] == "q" and run.info.status == "FINISHED"
        assert float(run.data.params["lr"]) == pytest.approx(trials.loc[trial_id, "lr"])
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert {m.step: m.value for m in history} == pytest.approx(
            {e: r["val_acc"] for e, r in results[trial_id].items()})


def _wandb_records(path: Path):
    """The protobuf records of a W&B offline run file: LevelDB's log format (32 KiB blocks of
    7-byte-headed fragments) after W&B's own 7-byte header."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, position = [], b"", 7
    while position + 7 <= len(data):
        block_left = 32768 - position % 32768
        if block_left < 7:
            position += block_left
            continue
        length, kind = struct.unpack("<HB", data[position + 4:position + 7])
        fragment = data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 2):  # full, first
            pending = fragment
        else:  # middle, last
            pending += fragment
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


@pytest.mark.slow
def test_wandb_writes_an_offline_run_per_trial_grouped_by_the_sweep(tracked_run):
    import json

    results = epochs_of(tracked_run.path)
    files = sorted(tracked_run.path.glob("trial_*/wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 12
    for file in files:
        records = _wandb_records(file)
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
        assert run.project == "resweep-tests" and run.run_group == "q"
        history = [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
                   for r in records if r.WhichOneof("record_type") == "history"]
        trained = results[run.run_id]
        assert {int(h["epoch"]): h["val_acc"] for h in history} == pytest.approx(
            {e: r["val_acc"] for e, r in trained.items()})


@pytest.mark.slow
def test_optuna_dashboard_serves_the_study_with_its_learning_curves(tracked_run):
    import json
    from io import BytesIO
    from wsgiref.util import setup_testing_defaults

    from optuna_dashboard import wsgi

    app_ = wsgi(f"sqlite:///{tracked_run.path / 'optuna.db'}")

    def get(path):
        environ = {}
        setup_testing_defaults(environ)
        environ.update(PATH_INFO=path, REQUEST_METHOD="GET", QUERY_STRING="", **{"wsgi.input": BytesIO()})
        status = []
        body = b"".join(app_(environ, lambda s, h, exc_info=None: status.append(s)))
        assert status[0].startswith("200"), (path, status)
        return json.loads(body)

    studies = get("/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == ["q"]
    study = get(f"/api/studies/{studies[0]['study_id']}")
    results = epochs_of(tracked_run.path)
    assert len(study["trials"]) == 12
    for trial in study["trials"]:
        trial_id = next(a["value"] for a in trial["user_attrs"] if a["key"] == "trial_id")
        curve = {int(v["step"]): v["value"] for v in trial["intermediate_values"]}
        assert curve == pytest.approx({e: r["val_acc"] for e, r in results[trial_id].items()}), trial_id
        assert {p["name"] for p in trial["params"]} == {"lr", "optimizer", "weight_decay", "batch_size"}


def test_a_missing_integration_says_which_pip_command_installs_it(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    result = CliRunner().invoke(app, ["run", "quickstart", "--local", "--storage", str(tmp_path), "--mlflow",
                                      f"sqlite:///{tmp_path / 'm.db'}"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip() == ("error: --mlflow needs the mlflow package: pip install -e '.[mlflow]' "
                                     "(or pip install mlflow)")


def _trial(trial_id, status, epoch=0, failure=None):
    return SimpleNamespace(trial_id=trial_id, status=status, last_result={"epoch": epoch, "failure": failure})


def test_the_progress_line_counts_trials_and_estimates_time_left():
    progress = SweepProgress("val_acc", "max", total=6, max_epochs=4)
    progress.started -= 60  # a minute in
    for trial_id, values in (("a", [0.5, 0.7, 0.8, 0.9]), ("b", [0.4]), ("c", [0.6, 0.65])):
        for epoch, value in enumerate(values, 1):
            progress.on_result(trial_id, {"epoch": epoch, "val_acc": value})
    progress.on_result("a", {"epoch": 1, "val_acc": 0.99, "replayed": True})  # a replayed epoch: no new work
    trials = [_trial("a", "TERMINATED", 4), _trial("b", "TERMINATED", 1), _trial("c", "RUNNING", 2),
              _trial("d", "PENDING")]
    assert progress.counts(trials) == {"done": 1, "stopped early": 1, "errored": 0, "running": 1, "pending": 3}
    assert progress.on_finished("a") and not progress.on_finished("b")  # b ended worse than a
    line = progress.line(trials)
    assert "2/6 trials: 1 done, 1 stopped early, 0 errored, 1 running" in line
    assert "best val_acc 0.9900 (a)" in line
    # 7 epochs in 60 s; finished trials took 2.5 epochs on average: c owes 1 (at least one), 3 to come 7.5
    assert progress.seconds_left(trials, progress.counts(trials)) == pytest.approx((1 + 7.5) * 60 / 7, rel=0.01)
    assert "left" in line



def test_the_progress_line_says_the_money_spent_and_forecast_at_the_measured_pace():
    # 2 GPUs a trial at $3 a GPU-hour, half a GPU-hour spent by the drivers before this one
    progress = SweepProgress("val_acc", "max", total=4, max_epochs=2, price_per_hour=3.0, units=2, hours_before=0.5)
    trials = [_trial("a", "RUNNING", 1), _trial("b", "PENDING")]
    assert progress.money(trials, progress.counts(trials)) == (1.5, None)  # nothing measured yet: no forecast
    progress.on_result("a", {"epoch": 1, "val_acc": 0.5, "epoch_time_s": 1800.0})
    progress.on_result("a", {"epoch": 1, "val_acc": 0.5, "epoch_time_s": 1800.0, "replayed": True})  # cost nothing
    spent, forecast = progress.money(trials, progress.counts(trials))
    assert spent == pytest.approx((0.5 + 1800 * 2 / 3600) * 3)  # $4.50
    # 1 epoch left of a, 2 for each of the 3 trials to come: 7 epochs at the measured 1800 s, 2 GPUs, $3
    assert forecast == pytest.approx(spent + 7 * 1800 * 2 * 3 / 3600)
    assert "| $4.50 spent, ~$25.50 at the end" in progress.line(trials)
    assert "spent" not in SweepProgress("val_acc", "max", total=4, max_epochs=2).line(trials)  # no price, no money
    assert "budget" not in progress.line(trials)
    # with a budget of 3 GPU-hours: 1.5 spent is half of it
    budgeted = SweepProgress("val_acc", "max", total=4, max_epochs=2, price_per_hour=3.0, units=2, hours_before=0.5,
                             budget_hours=3.0)
    budgeted.on_result("a", {"epoch": 1, "val_acc": 0.5, "epoch_time_s": 1800.0})
    assert budgeted.line(trials).endswith("| 50% of the budget")

@pytest.mark.slow
def test_status_watch_refreshes_until_every_planned_trial_has_ended(crashed_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(crashed_run, run)
    plan = run / "resweep.json"
    original = plan.read_text()
    plan.write_text(original.replace('"trials": 4', '"trials": 5'))  # one trial still to come
    result = {}
    watcher = threading.Thread(target=lambda: result.update(
        r=CliRunner().invoke(app, ["status", str(run), "--watch", "--every", "0.5"])))
    watcher.start()
    time.sleep(2)
    assert watcher.is_alive(), "it keeps watching while a trial is to come"
    plan.write_text(original)  # the last one has ended
    watcher.join(30)
    assert not watcher.is_alive()
    output = result["r"].output
    assert result["r"].exit_code == 0
    assert "4 of 5 trials ended" in output and "4 of 4 trials ended" in output


def test_misclassified_images_are_the_most_confident_errors_taken_in_turn_from_each_class():
    from analysis.stats import confident_errors
    from analysis.trained import TestEvaluation

    labels = np.array([0, 0, 0, 1, 1, 2])
    logits = torch.tensor([[0.0, 5.0, 0.0], [0.0, 1.0, 0.0], [0.0, 3.0, 0.0],  # class 0: all wrong
                           [0.0, 0.0, 2.0], [0.0, 4.0, 0.0],  # class 1: one wrong (2), one right
                           [9.0, 0.0, 0.0]])  # class 2: wrong, the most confident of all
    ev = TestEvaluation(model=None, classes=["a", "b", "c"], mean=(0,), std=(1,), inputs=torch.zeros(6, 1, 2, 2),
                        labels=labels, logits=logits, counts=None)
    assert list(confident_errors(ev)) == [5, 0, 3, 2, 1]


def test_report_pictures_draw_a_trial_in_one_colour_and_losses_on_a_log_scale(monkeypatch, tmp_path):
    import pandas as pd

    from analysis import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    history = pd.DataFrame([{"trial_id": t, "epoch": e, "train_loss": 1.0 / e, "val_loss": loss, "train_acc": 0.5,
                             "val_acc": acc}
                            for t, rows in {"x": [(0.1, 0.9), (30.0, 0.5)], "y": [(0.2, 0.8), (0.15, 0.85)],
                                            "z": [(0.3, 0.7), (0.25, 0.75)]}.items()
                            for e, (loss, acc) in enumerate(rows, 1)])
    trials = pd.DataFrame({"trial_id": ["x", "y", "z"], "stopped_early": [False, False, True]})
    colours = plots.trial_colours(["y", "x", "z"])
    plots.learning_curves(history, ["y", "x"], tmp_path / "a.png", colours)
    plots.asha_picture(history, trials, "val_loss", tmp_path / "b.png", colours)

    def colour_of(ax, label=None):
        return {line.get_label(): line.get_color() for line in ax.lines if not line.get_label().startswith("_")}

    curves, every = figures
    val_loss_panel = curves.axes[1]
    assert colour_of(val_loss_panel) == {"y": colours["y"], "x": colours["x"]}
    assert val_loss_panel.get_yscale() == "log", "a 30 against 0.1 spike does not flatten the rest"
    drawn = [line for line in every.axes[0].lines if len(line.get_xdata()) > 1]
    assert [line.get_color() for line in drawn] == [colours[t] for t in ("x", "y", "z")]
    assert every.axes[0].get_yscale() == "log"
