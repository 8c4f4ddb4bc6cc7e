import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# Every Ray node the tests start listens on 127.0.0.1, not this machine's network address.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Ray's temp folder of the tests' own: a sweep without --local never joins a cluster that other
# work on this machine started, and the clusters the tests start are noted here alone.
if "RAY_TMPDIR" not in os.environ:
    os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="rsw-", dir="/tmp")  # short: Ray's socket paths
    atexit.register(shutil.rmtree, os.environ["RAY_TMPDIR"], True)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """No test reads or writes the user's caches: data and torch hub go under tmp_path."""
    monkeypatch.setenv("RESWEEP_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RESWEEP_STORAGE", raising=False)


def tiny(**overrides):
    """A config that trains in a fraction of a second on the CPU."""
    from trainer.config import TrainConfig, from_dict

    values = dict(dataset="synthetic", synthetic_samples=120, synthetic_classes=4, image_size=16, model="resnet9",
                  width=4, epochs=2, batch_size=16, device="cpu", lr=0.05, scheduler="constant")
    values.update(overrides)
    return from_dict(values, base=TrainConfig())


def preset(tmp_path, trials=8, epochs=4, search=None, initial=None, sweep=None, name="sweep.yaml") -> str:
    """A small sweep preset on the real digits data, written to tmp_path as YAML. `search` and
    `initial` add to (or replace) the base search space and seed point; `sweep` changes sweep
    settings (grace_period, ...)."""
    import yaml

    text = {
        "description": "test sweep on digits",
        "train": {"dataset": "digits", "model": "resnet9", "width": 8, "image_size": 16, "epochs": epochs,
                  "batch_size": 64, "optimizer": "sgd", "scheduler": "onecycle", "device": "cpu"},
        "search": {"lr": {"loguniform": [1.0e-5, 10.0]}, "weight_decay": {"loguniform": [1.0e-5, 1.0e-2]},
                   **(search or {})},
        "initial": {"lr": 0.05, "weight_decay": 5.0e-4, **(initial or {})},
        "sweep": {"trials": trials, "grace_period": 1, "reduction_factor": 2, "concurrency": 2, **(sweep or {})},
        "resources": {"gpu": 0, "cpu": 1},
    }
    path = Path(tmp_path) / name
    path.write_text(yaml.safe_dump(text, sort_keys=False))
    return str(path)


@pytest.fixture(scope="session")
def crashed_run(tmp_path_factory):
    """A finished sweep in which some trials crash: image_size 4 is too small for ResNet9's three
    poolings, so those trials raise in forward(), are retried and end errored."""
    from typer.testing import CliRunner

    from sweeps.cli import app

    root = tmp_path_factory.mktemp("crashed")
    path = preset(root, trials=4, epochs=2, search={"image_size": {"choice": [16, 4]}}, initial={"image_size": 16})
    result = CliRunner().invoke(app, ["run", path, "--local", "--storage", str(root / "runs"), "--name", "crash",
                                      "--seed", "3"])
    assert result.exit_code == 0, result.output
    return root / "runs" / "crash"
