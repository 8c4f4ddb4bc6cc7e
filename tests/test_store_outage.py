"""A store's bad minutes, for real: sweeps whose results go to an S3 server (moto on 127.0.0.1)
behind a TCP proxy of the test's own (tests/faultproxy.py) that refuses and drops connections
for a while mid-sweep. An outage shorter than the wait window is ridden out (exit 0, every
trial TERMINATED, every epoch in its results, no retry spent); a longer one ends the driver
with one line naming the store, and `sweep resume` finishes the sweep once the store is back."""

import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import preset
from faultproxy import FaultProxy

pytestmark = pytest.mark.slow
EPOCHS = 4


@pytest.fixture
def store(tmp_path):
    from sweeps.localcluster import CREDENTIALS, S3Server

    server = S3Server(tmp_path / "s3").start()
    proxy = FaultProxy(server.port)
    yield server, proxy, {**os.environ, **CREDENTIALS, "TUNE_GLOBAL_CHECKPOINT_S": "2"}
    proxy.close()
    server.stop()


def _run_uri(server, proxy, name: str) -> str:
    return f"s3://{server.bucket}/runs/{name}?endpoint_override={proxy.endpoint}&scheme=http"


def _epochs_in_bucket(server, name: str) -> dict[str, list[int]]:
    """trial folder -> epochs in its result file, read from the S3 server directly (not through the proxy)."""
    import pyarrow.fs

    from sweeps.rundir import parse_results

    fs = server.filesystem()
    found = {}
    for info in fs.get_file_info(pyarrow.fs.FileSelector(f"{server.bucket}/runs/{name}", allow_not_found=True)):
        if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith("trial_"):
            try:
                with fs.open_input_stream(f"{info.path}/result.json") as f:
                    rows = parse_results(f.read().decode())
            except (FileNotFoundError, OSError):
                rows = []
            found[info.base_name] = [int(r["epoch"]) for r in rows if "epoch" in r]
    return found


def _strike_when_trained(server, proxy, name: str, seconds: float, epochs: int = 2,
                         until: threading.Event | None = None) -> threading.Thread:
    """Take the store away for `seconds` (or until `until` is set, if sooner) once a trial has
    `epochs` epochs in the bucket."""
    def strike():
        deadline = time.time() + 240
        while time.time() < deadline:
            if any(len(e) >= epochs for e in _epochs_in_bucket(server, name).values()):
                proxy.down()
                (until or threading.Event()).wait(seconds)
                proxy.up()
                return
            time.sleep(0.3)

    thread = threading.Thread(target=strike, daemon=True)
    thread.start()
    return thread


def _sweep(*args: str, env: dict, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweeps.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, start_new_session=True)


def _every_epoch_once(server, name: str, trials: int) -> None:
    found = _epochs_in_bucket(server, name)
    assert len(found) == trials, found
    for folder, epochs in found.items():
        assert sorted(set(epochs)) == list(range(1, EPOCHS + 1)), f"{folder} lacks an epoch: {epochs}"


def test_a_store_outage_shorter_than_the_window_is_ridden_out(store, tmp_path):
    from sweeps.rundir import load_run

    server, proxy, env = store
    path = preset(tmp_path, trials=3, epochs=EPOCHS, sweep={"grace_period": EPOCHS, "concurrency": 2})
    striker = _strike_when_trained(server, proxy, "blink", seconds=25)
    storage = _run_uri(server, proxy, "blink").replace("/blink?", "?")
    result = _sweep("run", path, "--local", "--storage", storage, "--name", "blink", "--seed", "2", env=env,
                    cwd=tmp_path)
    striker.join(5)
    print(result.stdout[-2500:], result.stderr[:3000], result.stderr[-2500:], sep="\n---\n")
    assert proxy.outages and proxy.outages[0][1] - proxy.outages[0][0] >= 25, "the outage happened"
    assert result.returncode == 0, result.stderr[-3000:]
    assert "does not answer since" in result.stderr and "answers again after" in result.stderr
    assert "Traceback" not in result.stderr
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
    trials = load_run(_run_uri(server, proxy, "blink")).trials
    assert len(trials) == 3 and set(trials["status"]) == {"TERMINATED"}
    assert int(trials["retries"].sum()) == 0, "no retry was spent on the store"
    assert (trials["epochs_trained"] == EPOCHS).all()
    _every_epoch_once(server, "blink", 3)


def test_past_the_window_the_driver_says_so_in_one_line_and_resume_finishes(store, tmp_path):
    from sweeps.rundir import load_run

    server, proxy, env = store
    env = {**env, "RESWEEP_STORE_WAIT_S": "3"}
    uri = _run_uri(server, proxy, "long")
    storage = uri.replace("/long?", "?")
    path = preset(tmp_path, trials=2, epochs=EPOCHS, sweep={"grace_period": EPOCHS, "concurrency": 2})
    driver_ended = threading.Event()  # the store comes back once the driver has given up (or after 60 s)
    striker = _strike_when_trained(server, proxy, "long", seconds=60, epochs=1, until=driver_ended)
    start = time.time()
    result = _sweep("run", path, "--local", "--storage", storage, "--name", "long", "--seed", "3", env=env,
                    cwd=tmp_path)
    ended = time.time()
    driver_ended.set()
    striker.join(60)
    print(result.stdout[-2000:], result.stderr[-2500:], sep="\n---\n")
    print(f"outage {proxy.outages[0][0] - start:.0f}-{proxy.outages[0][1] - start:.0f} s, driver ended at "
          f"{ended - start:.0f} s")
    assert proxy.outages and ended < proxy.outages[0][1], "the driver gave up during the outage"
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"127.0.0.1:{proxy.port}" in errors[0], errors
    assert f"continue with `sweep resume {shlex.quote(uri)}`" in errors[0], errors
    assert "Traceback" not in result.stderr
    print(f"gave up {ended - proxy.outages[0][0]:.0f} s into the outage, {ended - start:.0f} s after the start")
    resumed = _sweep("resume", uri, "--local", env=env, cwd=tmp_path)
    print(resumed.stdout[-1500:], resumed.stderr[-1500:], sep="\n---\n")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
    trials = load_run(uri).trials
    assert len(trials) == 2 and set(trials["status"]) == {"TERMINATED"}
    _every_epoch_once(server, "long", 2)
