"""`sweep train`, `sweep list/show/keys` and their errors, through Typer's CliRunner."""

import json

import pytest
from typer.testing import CliRunner

from sweeps.cli import app

runner = CliRunner()
TINY = ["--set", "dataset=synthetic", "--set", "synthetic_samples=100", "--set", "synthetic_classes=3",
        "--set", "width=4", "--set", "epochs=2", "--set", "device=cpu", "--set", "image_size=16"]


def invoke(*args):
    return runner.invoke(app, list(args))


def test_train_prints_a_row_per_epoch_and_json_last(tmp_path):
    result = invoke("train", "quickstart", *TINY, "--json", "--out", str(tmp_path / "out dir"))
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    final = json.loads(lines[-1])
    assert final["epochs"] == 2 and {"val_acc", "test_acc"} <= set(final)
    assert any(line.split()[0] == "2" for line in lines if line.strip() and line.split()[0].isdigit())
    assert (tmp_path / "out dir" / "checkpoint.pt").is_file()
    assert len((tmp_path / "out dir" / "metrics.jsonl").read_text().splitlines()) == 2


def test_train_resumes_from_its_checkpoint(tmp_path):
    out = tmp_path / "run"
    constant = ["--set", "scheduler=constant"]
    first = invoke("train", "quickstart", *TINY, *constant, "--out", str(out), "--json")
    assert first.exit_code == 0, first.output
    again = invoke("train", "quickstart", *TINY, *constant, "--set", "epochs=3", "--resume", str(out), "--json")
    assert again.exit_code == 0, again.output
    rows = [line for line in again.output.splitlines() if line.strip()[:1].isdigit()]
    assert [r.split()[0] for r in rows] == ["3"]  # only the epoch still owed
    # a onecycle schedule is laid out over the whole run: a longer run is not a continuation
    onecycle = invoke("train", "quickstart", *TINY, "--set", "scheduler=onecycle", "--resume", str(out))
    assert onecycle.exit_code == 2 and "the checkpoint was trained with scheduler='constant'" in onecycle.output


@pytest.mark.parametrize("args, message", [
    (["train", "nope"], "unknown preset 'nope'; known presets:"),
    (["train", "quickstart", "--set", "lr=abc"], "lr='abc' must be a number"),
    (["train", "quickstart", "--set", "optimizer=lamb"], "optimizer='lamb' is not known; allowed:"),
    (["train", "quickstart", "--set", "nosuchkey=1"], "unknown config key 'nosuchkey' in --set"),
    (["train", "quickstart", "--set", "lr"], "is not KEY=VALUE"),
    (["train", "quickstart", "--set", "epochs=-1"], "epochs=-1 must be > 0"),
    (["train", "quickstart", "--set", "dataset=cifar10", "--set", "download=false", "--data-dir", "/nonexistent/x"],
     "cifar10"),
    (["train", "quickstart", "--resume", "/nonexistent/ckpt"], "no such checkpoint"),
    (["show", "missing.yaml"], "no such preset file"),
])
def test_user_errors_are_one_line_and_exit_2(args, message):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1


def test_list_show_keys():
    listed = invoke("list")
    assert listed.exit_code == 0 and "quickstart" in listed.output and "digits" in listed.output
    shown = invoke("show", "quickstart")
    assert shown.exit_code == 0 and "loguniform" in shown.output
    keys = invoke("keys")
    assert keys.exit_code == 0 and "lr = 0.05" in keys.output


def test_every_command_has_help():
    from sweeps.cli import app

    commands = {c.name or c.callback.__name__: c.callback for c in app.registered_commands}
    assert {"list", "show", "keys", "train", "run", "resume", "status"} <= set(commands)
    for command, callback in commands.items():
        result = invoke(command, "--help")
        summary = " ".join(callback.__doc__.strip().splitlines()[0].split())
        assert result.exit_code == 0 and summary in " ".join(result.output.split()), command
