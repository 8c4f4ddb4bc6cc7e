"""A sweep on a real SLURM (tests/slurmcluster.py: munge, slurmctld and two slurmd nodes on
127.0.0.1): `sweep slurm` writes the plan and the job script and submits it; the job starts a
Ray head and a worker as job steps and drives the sweep. The notice SLURM gives before a time
limit stops the driver cleanly, a plain scancel ends a job mid-sweep, and the same script
submitted again continues the sweep each time, with nothing finished redone."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import preset
from slurmcluster import SlurmCluster, missing

from sweeps.runfolder.run import load_run

pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")


@pytest.fixture(scope="module")
def slurm():
    cluster = SlurmCluster(nodes=2, cpus_per_node=1).start()
    yield cluster
    cluster.close()


def sweep(slurm: SlurmCluster, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweeps.cli", *args], env=env or slurm.env(), capture_output=True,
                          text=True, timeout=120, cwd=slurm.root)


def submitted_job(out: str) -> str:
    return next(line.split()[2].rstrip(":") for line in out.splitlines() if line.startswith("submitted job"))


def test_what_slurm_refuses_is_one_line_and_leaves_nothing(slurm, tmp_path):
    runs = slurm.root / "runs-refused"
    args = ["slurm", preset(tmp_path, trials=2, epochs=1), "--storage", str(runs), "--cpus-per-node", "1"]
    # three nodes asked of a cluster of two: sbatch --test-only says so before anything is written
    done = sweep(slurm, *args, "--nodes", "3", "--name", "three", "--script", str(tmp_path / "three.sbatch"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "SLURM refuses the job" in done.stderr and "node" in done.stderr
    assert not (runs / "three").exists() and not (tmp_path / "three.sbatch").exists()
    # a trial asking more CPUs than a node has: refused by resweep, in one line
    done = sweep(slurm, *args, "--cpus-per-trial", "2", "--name", "big")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--cpus-per-node" in done.stderr
    # off the login node (no sbatch on PATH): one line, nothing written; --no-submit writes both
    env = {**slurm.env(), "PATH": str(Path(sys.executable).parent)}
    done = sweep(slurm, *args, "--name", "nosbatch", env=env)
    assert done.returncode == 2 and "sbatch not found" in done.stderr and not (runs / "nosbatch").exists()
    script = tmp_path / "later.sbatch"
    done = sweep(slurm, *args, "--name", "later", "--script", str(script), "--no-submit", env=env)
    assert done.returncode == 0, done.stderr
    assert (runs / "later" / "resweep.json").exists() and f"sbatch {script}" in done.stdout
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "#SBATCH --nodes=1" in script.read_text() and "Submitted batch job" not in done.stdout
    checked = slurm.cmd("sbatch", "--test-only", str(script), check=False)
    assert checked.returncode == 0, checked.stderr
    # the same name again: the run exists
    done = sweep(slurm, *args, "--name", "later", "--no-submit", "--script", str(tmp_path / "again.sbatch"), env=env)
    assert done.returncode == 2 and "already holds a sweep" in done.stderr


@pytest.mark.slow
def test_a_sweep_on_slurm_survives_its_time_limit_and_a_scancel(slurm, tmp_path):
    runs = slurm.root / "runs"
    script = slurm.root / "s.sbatch"
    done = sweep(slurm, "slurm", preset(tmp_path, trials=6, epochs=4, sweep={"concurrency": 2}), "--nodes", "2",
                 "--no-early-stopping",
                 "--cpus-per-node", "1", "--storage", str(runs), "--name", "s", "--script", str(script), "--seed", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    run = str(runs / "s")
    assert load_run(run).plan.trials == 6  # the plan is there before the job runs
    first = submitted_job(done.stdout)
    log = lambda job: (slurm.root / f"s-{job}.out").read_text(errors="replace")  # noqa: E731

    def wait_for(what, ready, timeout=240):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(1)
        raise TimeoutError(f"{what}: {slurm.logs()}")

    def ended() -> dict[str, int]:
        table = load_run(run).trials
        return {} if table.empty else \
            {r.trial_id: int(r.epochs_trained) for r in table.itertuples() if r.status == "TERMINATED"}

    # 1. SLURM's notice before the time limit (USR1 to the batch shell, as --signal=B:USR1@GRACE
    # sends it): the driver saves the sweep and ends, and the job ends with its Ray nodes
    slurm.wait_running(first)
    wait_for("the first trials' progress", lambda: "[0:" in log(first))
    slurm.cmd("scancel", "--batch", "--signal=USR1", first)
    state = slurm.wait_job(first, timeout=120)
    assert "interrupted:" in log(first) and state["ExitCode"] == "130:0", log(first)[-3000:]
    assert "2 node(s)" in log(first)
    assert slurm.processes() == [], slurm.processes()
    before_cancel = ended()

    # 2. the script again: it goes on; a plain scancel ends it mid-sweep
    second = slurm.cmd("sbatch", "--parsable", str(script)).stdout.strip()
    wait_for("the second job's driver", lambda: (slurm.root / f"s-{second}.out").exists() and "resuming" in log(second))
    slurm.cmd("scancel", second)
    assert slurm.wait_job(second, timeout=120)["JobState"] == "CANCELLED"
    partial = load_run(run)  # whole and readable
    assert len(before_cancel) <= len(ended()) < 6 and not partial.trials.empty
    kept = ended()
    history = {t: rows.reset_index(drop=True) for t, rows in partial.history.groupby("trial_id") if t in kept}
    wait_for("the second job's processes to end", lambda: slurm.processes() == [], timeout=60)

    # 3. and again: it finishes; what had finished is not trained again
    third = slurm.cmd("sbatch", "--parsable", str(script)).stdout.strip()
    state = slurm.wait_job(third, timeout=400)
    assert state["JobState"] == "COMPLETED", log(third)[-3000:]
    final = load_run(run)
    assert len(ended()) == 6 and (final.trials["status"] == "TERMINATED").all()
    for trial, rows in history.items():
        assert final.history[final.history["trial_id"] == trial].reset_index(drop=True).equals(rows), trial
    assert slurm.processes() == []
    report = subprocess.run([sys.executable, "-m", "analysis.cli", "report", run], capture_output=True, text=True,
                            timeout=300, env=slurm.env())
    assert report.returncode == 0, report.stderr
    assert json.loads((runs / "s" / "resweep.json").read_text())["trials"] == 6
