"""One driver per run: drivers in processes of their own race for a run folder on a disk and
in an S3 server (moto on 127.0.0.1), and exactly one proceeds; the others are refused with one
line naming it, and change nothing. A driver SIGKILLed lets go at once on a disk; behind a URI
its lease is taken over once its heartbeat is stale (or at once where it ran on this host)."""

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import preset

from sweeps.runfolder.claim import Claim, ClaimRefused, Holder
from sweeps.runfolder.layout import CLAIM_FILE

ROOT = Path(__file__).resolve().parents[1]
# A driver in a process of its own: waits for the start signal (a file), claims, says what
# happened, holds the claim for HOLD seconds, lets go.
DRIVER = """
import os, sys, time
sys.path.insert(0, {root!r})
from sweeps.runfolder.claim import Claim, ClaimRefused
start = {start!r}
while not os.path.exists(start):
    time.sleep(0.005)
try:
    claim = Claim.take({run!r}, "sweep run")
except ClaimRefused as err:
    print("refused:", err, flush=True)
    sys.exit(2)
print("won", os.getpid(), flush=True)
time.sleep({hold})
claim.release()
"""


def _drivers(run: str, tmp_path: Path, count: int, hold: float, env: dict | None = None) -> list[subprocess.Popen]:
    start = tmp_path / f"start-{time.monotonic_ns()}"
    code = DRIVER.format(root=str(ROOT), start=str(start), run=run, hold=hold)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env={**os.environ, **(env or {})}, start_new_session=True)
             for _ in range(count)]
    time.sleep(2.0)  # every one of them imported and waits
    start.write_text("go")
    return procs


def _outcomes(procs: list[subprocess.Popen]) -> list[str]:
    return [p.communicate(timeout=60)[0].strip() for p in procs]


def test_of_drivers_started_together_on_a_disk_exactly_one_claims_the_run(tmp_path):
    run = str(tmp_path / "runs" / "race")
    outcomes = _outcomes(_drivers(run, tmp_path, count=4, hold=1.0))
    print(outcomes)
    assert sum(o.startswith("won") for o in outcomes) == 1
    winner = next(o for o in outcomes if o.startswith("won")).split()[1]
    refused = [o for o in outcomes if o.startswith("refused")]
    assert len(refused) == 3 and all(f"pid {winner}" in o and "is being driven by `sweep run`" in o for o in refused)
    assert not (Path(run) / CLAIM_FILE).exists(), "the winner let go"


def test_a_killed_driver_lets_go_of_a_run_on_a_disk_at_once(tmp_path):
    run = str(tmp_path / "runs" / "killed")
    holder = _drivers(run, tmp_path, count=1, hold=120)[0]
    deadline = time.time() + 30
    while not (Path(run) / CLAIM_FILE).exists() and time.time() < deadline:
        time.sleep(0.05)
    with pytest.raises(ClaimRefused, match=f"pid {holder.pid}"):
        Claim.take(run, "sweep resume")
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait(10)
    claim = Claim.take(run, "sweep resume")  # no waiting for a heartbeat to go stale
    try:
        assert claim.took_over is not None and claim.took_over.pid == holder.pid
        assert f"pid {holder.pid}" in claim.note() and "ended without letting go" in claim.note()
    finally:
        claim.release()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    from tools.localcluster import CREDENTIALS, S3Server

    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    yield server
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_of_drivers_started_together_on_s3_exactly_one_claims_the_run(s3, tmp_path):
    run = s3.uri("runs/race")
    outcomes = _outcomes(_drivers(run, tmp_path, count=3, hold=3.0))
    print(outcomes)
    assert sum(o.startswith("won") for o in outcomes) == 1, outcomes
    assert sum(o.startswith("refused") for o in outcomes) == 2


def test_a_lease_on_s3_is_taken_over_only_when_stale(s3, monkeypatch):
    from sweeps.runfolder.storage import exists, join, write_text

    run = s3.uri("runs/lease")
    now = time.time()
    elsewhere = Holder("another-host", 4242, "", "sweep run", "t0", now - 300, now - 2)
    write_text(join(run, CLAIM_FILE), elsewhere.to_json())
    with pytest.raises(ClaimRefused, match="on another-host"):
        Claim.take(run, "sweep resume")  # its heartbeat is fresh: a live driver on another node
    stale = Holder("another-host", 4242, "", "sweep run", "t1", now - 300, now - 120)
    write_text(join(run, CLAIM_FILE), stale.to_json())
    monkeypatch.setattr("sweeps.runfolder.claim.HEARTBEAT_S", 0.2)
    claim = Claim.take(run, "sweep resume")
    try:
        assert "last answered 12" in claim.note() and "another-host" in claim.note()
        first = Holder.parse(json.dumps(json.loads(s3.filesystem().open_input_stream(
            f"{s3.bucket}/runs/lease/{CLAIM_FILE}").read())))
        time.sleep(1.0)
        later = Holder.parse(s3.filesystem().open_input_stream(f"{s3.bucket}/runs/lease/{CLAIM_FILE}").read().decode())
        assert first.token == later.token == claim.holder.token and later.heartbeat > first.heartbeat, "it beats"
    finally:
        claim.release()
    assert not exists(join(run, CLAIM_FILE))


def _cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sweeps.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
                            start_new_session=True)


def _race_two_sweeps(tmp_path: Path, storage: str, run: str, read_trials) -> None:
    from sweeps.runfolder.layout import plan_file
    from sweeps.runfolder.storage import exists

    def plan_written() -> bool:
        return exists(plan_file(run))

    path = preset(tmp_path, trials=2, epochs=2, sweep={"concurrency": 1})
    args = ["run", path, "--local", "--storage", storage, "--name", "race", "--seed", "1"]
    first, second = _cli(*args, cwd=tmp_path), _cli(*args, cwd=tmp_path)
    outs = {}
    try:
        # the one refused answers at once, while the other sweep runs on
        deadline = time.time() + 120
        while first.poll() is None and second.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        loser, winner = (first, second) if first.poll() is not None else (second, first)
        outs["loser"] = loser.communicate(timeout=30)
        while not plan_written() and time.time() < deadline:  # the winner's first file
            time.sleep(0.1)
        assert winner.poll() is None, "the refused one answered before the sweep ended"
        resume = subprocess.run([sys.executable, "-m", "sweeps.cli", "resume", run, "--local"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        outs["winner"] = winner.communicate(timeout=600)
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    print(outs["loser"][1], resume.stderr, outs["winner"][0][-1500:], sep="\n---\n")
    assert loser.returncode == 2 and outs["loser"][1].count("\n") == 1
    assert outs["loser"][1].startswith(f"error: {run} is being driven by `sweep run` on {socket.gethostname()} "
                                       f"(pid {winner.pid}")
    assert resume.returncode == 2 and resume.stderr.count("\n") == 1 and "is being driven by `sweep run`" in \
        resume.stderr and f"then `sweep resume {shlex.quote(run)}`" in resume.stderr
    assert winner.returncode == 0, outs["winner"][1][-3000:]
    trials, states = read_trials()
    assert len(trials) == 2 and set(trials["status"]) == {"TERMINATED"}, "the folder holds the one sweep, whole"
    assert len(states) == 1, f"one Tune experiment state, not {states}"


@pytest.mark.slow
def test_two_sweeps_of_one_name_on_a_disk_one_runs_one_is_refused(tmp_path):
    from sweeps.runfolder.run import load_run

    run = str(tmp_path / "runs" / "race")
    _race_two_sweeps(tmp_path, str(tmp_path / "runs"), run,
                     lambda: (load_run(run).trials, sorted(Path(run).glob("experiment_state-*.json"))))
    assert not (Path(run) / CLAIM_FILE).exists()


@pytest.mark.slow
def test_two_sweeps_of_one_name_on_s3_one_runs_one_is_refused(s3, tmp_path):
    from sweeps.runfolder.run import load_run
    from sweeps.runfolder.storage import list_folder

    run = s3.uri("runs/race")
    _race_two_sweeps(tmp_path, s3.uri("runs"), run,
                     lambda: (load_run(run).trials, [n for n, _ in list_folder(run) if n.startswith("experiment_st")]))
    assert CLAIM_FILE not in {n for n, _ in list_folder(run)}
