"""Every shipped preset loads, validates and trains on synthetic data of its shape; bad presets fail clearly."""

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sweeps.cli import app
from sweeps.presets import PresetError, load_preset, preset_dir, preset_names
from trainer import train
from trainer.config import from_dict

CLASSES = {"flowers102": 102, "flowers5": 5, "cifar10": 10, "cifar100": 100, "digits": 10}
PRESETS = sorted(p.stem for p in Path(preset_dir()).glob("*.yaml"))


def test_the_seed_presets_are_all_shipped():
    assert {"quickstart", "flowers-r50", "flowers5-r34", "flowers5-r9", "cifar100-r50", "cifar10-r18"} <= set(PRESETS)
    assert preset_names() == PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_preset_trains_on_synthetic_data_of_its_shape(name):
    preset = load_preset(name)
    assert preset.initial, "the seed's own point is evaluated first"
    for key, value in preset.initial.items():
        assert preset.search[key].contains(value)
    config = preset.trial_config(preset.initial)
    classes = CLASSES[config.dataset]
    two_phase = config.head_epochs > 0
    smoke = from_dict({"dataset": "synthetic", "synthetic_classes": classes, "synthetic_samples": 4 * classes,
                       "pretrained": False, "epochs": 2 if two_phase else 1, "head_epochs": 1 if two_phase else 0,
                       "batch_size": 4, "max_train_samples": 8, "eval_test": False, "device": "cpu",
                       "measure_cost": False}, base=config)  # its cost: tests/test_train.py
    rows = []
    train(smoke, report=lambda m, save: rows.append(m))
    assert [r["epoch"] for r in rows] == list(range(1, smoke.epochs + 1))
    assert all(math.isfinite(r["train_loss"]) and r["train_loss"] > 0 for r in rows)
    assert 0.0 <= rows[-1]["val_acc"] <= 1.0 and math.isfinite(rows[-1]["val_loss"])


def write(tmp_path, text, name="my.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


BASE = """
train: {dataset: digits, model: resnet9, width: 8, epochs: 2}
search: {lr: {loguniform: [1.0e-3, 1.0e-1]}}
initial: {lr: 0.01}
sweep: {trials: 2, grace_period: 1}
resources: {gpu: 0, cpu: 1}
"""


def test_a_users_yaml_file_is_a_preset(tmp_path):
    preset = load_preset(write(tmp_path, BASE))
    assert preset.name == "my" and preset.trials == 2 and preset.train.width == 8


@pytest.mark.parametrize("text, message", [
    ("train: {dataset: digits\n  model: [", "malformed YAML at line"),
    ("- a\n- b\n", "a preset is a YAML mapping"),
    (BASE + "extra: 1\n", "unknown key 'extra'; allowed: description, source, train"),
    (BASE.replace("model: resnet9", "model: resnet7"), "train: model='resnet7' is not known; allowed:"),
    (BASE.replace("loguniform: [1.0e-3, 1.0e-1]", "normal: [0, 1]"), "search.lr: unknown distribution 'normal'"),
    (BASE.replace("loguniform: [1.0e-3, 1.0e-1]", "loguniform: [0.1, 0.01]"), "needs low < high"),
    (BASE.replace("loguniform: [1.0e-3, 1.0e-1]", "loguniform: [0, 0.1]"), "loguniform needs low > 0"),
    (BASE.replace("{lr: {loguniform: [1.0e-3, 1.0e-1]}}", "{optimizer: {uniform: [0, 1]}}").replace(
        "initial: {lr: 0.01}", ""), "optimizer takes a name; use {choice: [...]}"),
    (BASE.replace("{lr: {loguniform: [1.0e-3, 1.0e-1]}}", "{optimizer: {choice: [sgd, lamb]}}").replace(
        "initial: {lr: 0.01}", ""), "optimizer='lamb' is not known"),
    (BASE.replace("{lr: {loguniform", "{lrr: {loguniform"), "search.lrr: unknown config key 'lrr'"),
    (BASE.replace("initial: {lr: 0.01}", "initial: {lr: 5.0}"), "initial.lr=5.0 lies outside loguniform"),
    (BASE.replace("initial: {lr: 0.01}", "initial: {momentum: 0.9}"), "initial.momentum: not in the search space"),
    (BASE.replace("trials: 2", "trials: two"), "sweep.trials='two' must be a int"),
    (BASE.replace("grace_period: 1", "grace_period: 5"), "grace_period=5 exceeds train.epochs=2"),
    (BASE.replace("gpu: 0", "gpu: 1.5"), "resources need gpu >= 0"),
    (BASE + "sweep: {metric: accuracy}\n", "sweep.metric='accuracy'; allowed: val_acc"),
])
def test_bad_presets_fail_with_one_line_naming_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(PresetError) as err:
        load_preset(path)
    assert path in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_preset_through_the_cli_exits_2_without_traceback(tmp_path):
    path = write(tmp_path, "train: [1, 2\n")
    for command in (["run", path, "--dry-run"], ["show", path], ["train", path]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2 and "malformed YAML" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args, message", [
    (["run", "nope"], "unknown preset 'nope'"),
    (["run", "quickstart", "--set", "lr=x"], "lr='x' must be a number"),
    (["run", "quickstart", "--samples", "0"], "need at least 1 trial"),
    (["run", "flowers-r50", "--max-epochs", "35"], "epochs 35 is below the preset's ASHA grace period 40"),
    (["run", "flowers-r50", "--set", "epochs=35"], "epochs 35 is below the preset's ASHA grace period 40"),
    (["run", "quickstart", "--warm-start", "/nonexistent/run"], "--warm-start /nonexistent/run: no such run folder"),
    (["run", "quickstart", "--max-epochs", "0"], "epochs=0 must be > 0"),
    (["run", "quickstart", "--gpus-per-trial", "1.5"], "need gpu >= 0"),
    (["run", "quickstart", "--name", "a/b"], "a run name is one folder name"),
    (["status", "/nonexistent/run"], "no such run folder"),
    (["resume", "/nonexistent/run"], "no such run folder"),
])
def test_sweep_run_bad_input(args, message):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_dry_run_prints_the_plan_and_cost(tmp_path):
    result = CliRunner().invoke(app, ["run", "flowers-r50", "--dry-run", "--samples", "10", "--storage",
                                      str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "trials          10" in out and "at most 150 per trial, 1500 in all" in out
    assert "head_lr" in out and "(first: 0.01)" in out and "GPU-hours" in out
    assert not list(tmp_path.iterdir()), "a dry run writes nothing"


def test_set_fixes_a_searched_key(tmp_path):
    result = CliRunner().invoke(app, ["run", "quickstart", "--dry-run", "--set", "lr=0.02"])
    assert result.exit_code == 0
    assert "    lr " not in result.output and "optimizer" in result.output
