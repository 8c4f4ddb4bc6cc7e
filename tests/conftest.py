import atexit
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import replace
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
# In a lane of pytest-xdist, torch's threads share the cores with the other lane's rather than
# spinning against them (the subprocesses a test starts inherit it).
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    lanes = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // lanes)))


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """No test reads or writes the user's caches: data and torch hub go under tmp_path."""
    monkeypatch.setenv("RESWEEP_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RESWEEP_STORAGE", raising=False)


def crash(process, timeout: float = 30.0) -> None:
    """A crashed machine: SIGKILL `process` (started with start_new_session=True) and every
    process of its session at once, and wait until none is left. Ray's workers run in
    process groups of their own, so killing the driver's group alone leaves them training
    (and writing checkpoints) for a moment after the driver is gone."""
    sid = process.pid
    deadline = time.monotonic() + timeout
    while True:
        members = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:  # fields after the command's closing parenthesis: state ppid pgrp session
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                members.append(int(entry.name))
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.poll()  # reaps the driver; the others are reaped by init
        if not members:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"processes {members} of session {sid} outlived SIGKILL")
        time.sleep(0.05)
    process.wait()


def tiny(**overrides):
    """A config that trains in a fraction of a second on the CPU."""
    from trainer.config import TrainConfig, from_dict

    values = dict(dataset="synthetic", synthetic_samples=120, synthetic_classes=4, image_size=16, model="resnet9",
                  width=4, epochs=2, batch_size=16, device="cpu", lr=0.05, scheduler="constant")
    values.update(overrides)
    return from_dict(values, base=TrainConfig())


def preset(tmp_path, trials=8, epochs=4, search=None, initial=None, sweep=None, name="sweep.yaml",
           train=None) -> str:
    """A small sweep preset on the real digits data, written to tmp_path as YAML. `search` and
    `initial` add to (or replace) the base search space and initial configuration; `sweep` changes sweep
    settings (grace_period, ...), `train` the training settings."""
    import yaml

    text = {
        "description": "test sweep on digits",
        "train": {"dataset": "digits", "model": "resnet9", "width": 8, "image_size": 16, "epochs": epochs,
                  "batch_size": 64, "optimizer": "sgd", "scheduler": "onecycle", "device": "cpu", **(train or {})},
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
def crashed_run(tmp_path_factory, worker_id):
    """A finished sweep in which some trials crash: image_size 4 is too small for ResNet9's three
    poolings, so those trials raise in forward(), are retried and end errored. Swept once per
    session: the first lane that asks sweeps it, the other waits for it (its tests only read it)."""
    from filelock import FileLock

    if worker_id == "master":  # pytest alone
        return _sweep_crashed(tmp_path_factory.mktemp("crashed"))
    shared = tmp_path_factory.getbasetemp().parent  # the session's, above each lane's own
    with FileLock(str(shared / "crashed.lock")):
        if not (shared / "crashed" / "done").exists():
            run = _sweep_crashed(shared / "crashed")
            (shared / "crashed" / "done").write_text(str(run))
    return shared / "crashed" / "runs" / "crash"


def _sweep_crashed(root: Path) -> Path:
    from typer.testing import CliRunner

    from sweeps.cli import app

    root.mkdir(exist_ok=True)
    path = preset(root, trials=4, epochs=2, search={"image_size": {"choice": [16, 4]}}, initial={"image_size": 16})
    result = CliRunner().invoke(app, ["run", path, "--local", "--storage", str(root / "runs"), "--name", "crash",
                                      "--seed", "3"])
    assert result.exit_code == 0, result.output
    return root / "runs" / "crash"


# trial id -> (Tune status, retries, params, epochs as (val_acc, replayed), failure row or None)
TRIALS = {
    "aaaa": ("TERMINATED", 0, {"lr": 0.1, "weight_decay": 1e-4}, [(0.5, False), (0.7, False), (0.9, False),
                                                                   (0.8, False)], None),
    "bbbb": ("TERMINATED", 0, {"lr": 0.01, "weight_decay": 1e-3}, [(0.4, False)], None),
    "cccc": ("TERMINATED", 0, {"lr": 5.0, "weight_decay": 1e-5}, [(0.3, False), (0.2, False)],
             {"failure": "diverged", "error": "the loss is nan at epoch 3"}),
    "dddd": ("ERROR", 2, {"lr": 0.2, "weight_decay": 1e-4}, [], None),
    # restarted from its epoch-1 checkpoint: epoch 1 reported again (replayed) with another value
    "eeee": ("RUNNING", 0, {"lr": 0.05, "weight_decay": 5e-4}, [(0.6, False), (0.65, False), (0.1, True)], None),
}
NODE_LOSSES = {"aaaa": 3}  # tries cut short by a lost node (sweeps.engine.reclaim), kept apart from the retries


def handmade_run(tmp_path, name: str = "handmade", **plan_fields):
    """A run folder written by hand in the format Tune and the trials write (no Ray): a trial of
    each ending (TRIALS), empty checkpoint folders; returns (plan, folder). `plan_fields` change
    the plan (mlflow=..., say)."""
    import json

    from sweeps.planner import make_plan
    from sweeps.presets import load_preset
    from sweeps.runfolder.layout import CHECKPOINT_KEY, checkpoint_name

    plan = make_plan(load_preset(preset(tmp_path, trials=6, epochs=4)), [], None, None, None, None,
                          str(tmp_path / "runs"), name, 1)
    plan = replace(plan, **plan_fields)
    plan.save()
    root = tmp_path / "runs" / name
    entries = []
    for index, (trial_id, (status, retries, params, epochs, failure)) in enumerate(TRIALS.items(), start=1):
        folder = root / f"trial_{trial_id}"
        folder.mkdir()
        (folder / "params.json").write_text(json.dumps(params))
        lines = []
        for epoch, (value, replayed) in enumerate(epochs, start=1):
            if replayed:
                epoch = 1
            lr_key = "lr" if trial_id == "aaaa" else "epoch_lr"  # aaaa as a run folder from before the rename
            lines.append({"epoch": epoch, "val_acc": value, "val_loss": 1 - value, lr_key: 0.1, "epoch_time_s": 2.0,
                          "finished_at": 1000.0 + 10 * index + epoch, CHECKPOINT_KEY: checkpoint_name(epoch),
                          "replayed": replayed,
                          # the trainer reports the model's cost with the first epoch it trains
                          **({"params": 1000.0 * index, "latency_ms": 0.5 * index} if epoch == 1 else {})})
        if failure:
            lines.append(failure)
        (folder / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
        for epoch in {2, len(epochs)} if trial_id == "aaaa" else {len(epochs)}:  # kept: epochs 2 and 4 of aaaa
            if epoch:
                (folder / checkpoint_name(epoch)).mkdir()
        if status == "ERROR":
            (folder / "error.txt").write_text("Traceback ...\nRuntimeError: boom\n")
        meta = {"trial_id": trial_id, "status": status, "relative_logdir": folder.name,
                "experiment_tag": f"{index}_lr={params['lr']}", "config": params}
        run_meta = {"num_failures": retries, "node_losses": NODE_LOSSES.get(trial_id, 0)}
        entries.append([json.dumps(meta), json.dumps(run_meta)])
    (root / "experiment_state-2026-11-23_00-00-00.json").write_text(json.dumps({"trial_data": entries}))
    return plan, root


# --- the session in two lanes: `make test` runs it with pytest-xdist (`-n 2`). The tests are cut
# into units that a lane runs whole: a module of SHARED (its tests share a module-scoped fixture: a
# sweep, a SLURM cluster, built once) is one unit; every other test is a unit of its own. The units
# start longest first, so that the two lanes end together. Most of the long ones wait on timers, Ray's
# start-up or SLURM rather than the CPU, so two of them share 2 cores well.

# modules whose tests share a module-scoped fixture (the session checks that this list is whole)
SHARED = {"test_bad_input", "test_export", "test_one_driver", "test_slurm", "test_warmstart",
          "test_watching"}
# the longest units, longest first (a clean-clone `.ci/run` here, in two lanes): a module, or
# module::part of a test's name
LONGEST = ["test_chaos", "test_slurm", "test_benchmarks::[pbt.py]", "test_watching", "test_cluster",
           "test_sweep::test_killed_driver", "test_benchmarks::[orchestration.py]", "test_population",
           "test_benchmarks::[peers.py]", "test_store_outage", "test_benchmarks::[sweep_efficiency.py]",
           "test_benchmarks::[warm_start.py]", "test_sweep::test_ctrl_c", "test_benchmarks::[multi_objective.py]",
           "test_sweep::test_state_files", "test_one_driver", "test_analysis", "test_export",
           "test_presets::[flowers-r50]"]


def unit(nodeid: str) -> str:
    """The unit a test belongs to: its module's name if the module is SHARED, else module::test."""
    path, _, name = nodeid.partition("::")
    module = Path(path).stem
    return module if module in SHARED else f"{module}::{name}"


def _rank(unit_name: str, slow: bool) -> tuple[int, int]:
    """LONGEST first, in its order (a module's entry ranks its slow units), then the other slow units."""
    module, _, name = unit_name.partition("::")
    for index, entry in enumerate(LONGEST):
        entry_module, _, part = entry.partition("::")
        if module == entry_module and part in name and (part or slow):
            return 0, index
    return (1 if slow else 2), 0


def pytest_collection_modifyitems(session, config, items):
    sharing = {item.module.__name__ for item in items if any(
        d.scope in ("module", "class") for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs)}
    collected = {item.module.__name__ for item in items}
    if sharing != SHARED & collected:
        raise pytest.UsageError(f"tests/conftest.py: SHARED should hold {sorted(sharing)} of the modules collected, "
                                f"not {sorted(SHARED & collected)}: a module-scoped fixture is built once per lane")
    slow = {unit(item.nodeid) for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: _rank(unit(item.nodeid), unit(item.nodeid) in slow))  # stable: file order within


def pytest_xdist_make_scheduler(config, log):
    """xdist's scheduler by scope, with conftest's units for scopes, in the order collected."""
    from xdist.scheduler import LoadScopeScheduling

    class Units(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit(nodeid)

    config.option.loadscopereorder = False
    return Units(config, log)
