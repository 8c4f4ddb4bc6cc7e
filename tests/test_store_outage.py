"""A store's bad minutes, for real: sweeps whose results go to an S3 server (moto on 127.0.0.1)
behind a TCP proxy of the test's own (tests/faultproxy.py) that refuses and drops connections
for a while mid-sweep. An outage longer than the wait window ends the driver with one line
naming the store, and `sweep resume` finishes the sweep once the store is back. Outages
shorter than the window, ridden out under load, are tests/test_chaos.py's."""

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
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
    from tools.localcluster import CREDENTIALS, S3Server

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

    from sweeps.runfolder.results import parse_results

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


def test_a_sweep_that_ends_while_the_store_is_away_waits_for_it_and_stores_its_last_state(store, tmp_path):
    """The store goes away the moment the last trial has ended: the driver's last copy of Tune's
    state, Tune's reading of it and the summary meet the outage (they used to end the sweep with
    exit 1, a traceback, its last state never stored); they wait for the store, and the run
    folder ends whole."""
    from sweeps.runfolder.run import load_run

    server, proxy, env = store
    name, epochs = "ending", 2
    path = preset(tmp_path, trials=2, epochs=epochs, sweep={"grace_period": epochs, "concurrency": 2})
    storage = _run_uri(server, proxy, name).replace(f"/{name}?", "?")
    ray_tmp = Path(tempfile.mkdtemp(prefix="rsw-", dir="/tmp"))  # Ray's socket paths stay short
    driver = subprocess.Popen([sys.executable, "-m", "sweeps.cli", "run", path, "--local", "--storage", storage,
                               "--name", name, "--seed", "4"], env={**env, "RAY_TMPDIR": str(ray_tmp)}, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def ended(result: Path) -> bool:
        try:
            return any(f'"epoch": {epochs},' in line for line in result.read_text().splitlines())
        except OSError:
            return False

    def strike():  # the driver has the last epoch of both trials: what follows is its last copies
        deadline = time.time() + 300
        while time.time() < deadline and driver.poll() is None:
            results = list(ray_tmp.glob("**/driver_artifacts/trial_*/result.json"))
            if len(results) == 2 and all(ended(r) for r in results):
                proxy.down()
                threading.Timer(40, proxy.up).start()  # longer than Tune's own end-of-sweep uploads try for
                return
            time.sleep(0.02)

    striker = threading.Thread(target=strike, daemon=True)
    striker.start()
    try:
        out, err = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, 9)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    striker.join(60)
    print(out[-2000:], err[-2500:], sep="\n---\n")
    assert proxy.outages, "the outage happened"
    assert "does not answer since" in err, "the driver's last copies met the outage"
    assert driver.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
    trials = load_run(server.uri(f"runs/{name}")).trials  # the stored state, read past the proxy
    assert len(trials) == 2 and set(trials["status"]) == {"TERMINATED"}, trials[["trial_id", "status"]]
    found = _epochs_in_bucket(server, name)
    assert all(sorted(set(e)) == list(range(1, epochs + 1)) for e in found.values()), found


def test_past_the_window_the_driver_says_so_in_one_line_and_resume_finishes(store, tmp_path):
    from sweeps.runfolder.run import load_run

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
