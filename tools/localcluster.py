"""The cluster path on one machine: an autoscaling Ray cluster whose GPU workers are fake
nodes started on demand, and an S3-compatible server, both on 127.0.0.1. What `ray up
cluster.yaml` then `sweep run` on the head does, seen before paying for a cluster; `make
cluster-demo` runs it (`python -m tools.localcluster`), and the tests use it.

- The S3 server is moto's (`pip install -e '.[test]'`), in its own process on a free port.
- The cluster is `RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config=FILE` with Ray's
  `fake_multinode` provider: a head with no GPU, and a worker type of 1 CPU and 1 GPU that
  the autoscaler adds (at most 2) while trials ask for GPUs and removes when idle. Every
  node is on 127.0.0.1 (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`), with token authentication
  and a HOME and Ray temp folder of its own, so the user's token and clusters are not
  touched.
- Every process is started in a session of its own and ended by that session's id alone,
  never by name: a stop by name would end every Ray process on the machine, other work's too.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

BIN = Path(sys.executable).parent
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "resweep-demo", "AWS_SECRET_ACCESS_KEY": "resweep-demo",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listened at 127.0.0.1:{port} after {timeout:g} s")


class Session:
    """A command started in a new session; everything it starts stays in that session (Ray's
    processes do not leave it), so the session id finds them all when it is time to end them."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path):
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        self.sid = self.process.pid

    def members(self) -> list[tuple[int, str]]:
        """(pid, command line) of the running (not zombie) processes of this session."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, session, ...
                if int(fields[3]) == self.sid and fields[0] != "Z":
                    found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
            except (OSError, ValueError, IndexError):
                continue  # it ended while we looked
        return found

    def stop(self, grace: float = 5.0) -> None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            for pid, _ in self.members():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while self.members() and time.monotonic() < deadline:
                time.sleep(0.1)
            if not self.members():
                break
        if self.process.poll() is None:
            self.process.wait(5)


class S3Server:
    """moto's S3 server on 127.0.0.1 and a free port, with one bucket."""

    def __init__(self, root: Path, bucket: str = "resweep"):
        self.root, self.bucket, self.port = root, bucket, free_port()
        self.session: Session | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def uri(self, path: str = "") -> str:
        """s3://BUCKET/PATH with the endpoint in the query: how every command and node finds it."""
        return f"s3://{self.bucket}/{path}?endpoint_override={self.endpoint}&scheme=http"

    def start(self) -> S3Server:
        self.root.mkdir(parents=True, exist_ok=True)
        moto = BIN / "moto_server"
        if not moto.exists():
            raise SystemExit("moto's S3 server is missing: pip install -e '.[test]'")
        self.session = Session([str(moto), "-H", "127.0.0.1", "-p", str(self.port)], {**os.environ, **CREDENTIALS},
                               self.root / "moto.log")
        wait_for_port(self.port, 30)
        self.filesystem(allow_bucket_creation=True).create_dir(self.bucket)
        return self

    def filesystem(self, **options):
        import pyarrow.fs

        return pyarrow.fs.S3FileSystem(access_key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                       secret_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"], region="us-east-1",
                                       endpoint_override=self.endpoint, scheme="http", **options)

    def stop(self) -> None:
        if self.session:
            self.session.stop()


def autoscaling_config(gcs_port: int, head_cpus: int, max_workers: int) -> dict[str, Any]:
    """Ray's cluster config for the `fake_multinode` provider (the pip wheel ships no example)."""
    return {
        "cluster_name": "resweep-local",
        "max_workers": max_workers,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 0.1,  # 6 s: idle GPU workers go soon, as the demo shows
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": f"127.0.0.1:{gcs_port}"},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": head_cpus, "GPU": 0}, "node_config": {}, "max_workers": 0},
            "gpu_worker": {"resources": {"CPU": 1, "GPU": 1}, "node_config": {}, "min_workers": 0,
                           "max_workers": max_workers},
        },
        "head_node_type": "ray.head.default",
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
        "head_start_ray_commands": [], "worker_start_ray_commands": [], "rsync_exclude": [], "rsync_filter": [],
    }


class FakeCluster:
    """A Ray head on 127.0.0.1 with no GPU, which the autoscaler grows by fake 1-GPU workers."""

    def __init__(self, root: Path, head_cpus: int = 1, max_workers: int = 2, extra_env: dict[str, str] | None = None):
        self.root, self.head_cpus, self.max_workers = root, head_cpus, max_workers
        self.port = free_port()
        # Ray's socket paths must stay under ~100 characters: a short temp folder of our own
        self.ray_tmp = Path(tempfile.mkdtemp(prefix="rsw-", dir="/tmp"))
        self.extra_env = extra_env or {}
        self.session: Session | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment of a shell on the head node: commands run in it find the cluster."""
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
        env.update(HOME=str(self.root / "home"), RAY_TMPDIR=str(self.ray_tmp), RAY_AUTH_MODE="token",
                   RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1",
                   **CREDENTIALS, **self.extra_env)
        return env

    def start(self, timeout: float = 90) -> FakeCluster:
        (self.root / "home").mkdir(parents=True, exist_ok=True)
        config = self.root / "autoscaling.yaml"
        config.write_text(yaml.safe_dump(autoscaling_config(self.port, self.head_cpus, self.max_workers)))
        env = self.env()
        subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
        self.session = Session([str(BIN / "ray"), "start", "--head", f"--port={self.port}",
                                f"--autoscaling-config={config}", f"--num-cpus={self.head_cpus}", "--num-gpus=0",
                                "--dashboard-host=127.0.0.1", "--disable-usage-stats"],
                               {**env, "RAY_FAKE_CLUSTER": "1"}, self.root / "ray-start.log")
        if self.session.process.wait(timeout) != 0:
            raise RuntimeError(f"ray start failed: {(self.root / 'ray-start.log').read_text()[-2000:]}")
        wait_for_port(self.port, timeout)
        return self

    def worker_nodes(self) -> int:
        """GPU worker nodes running now: one raylet each, besides the head's."""
        raylets = [cmd for _, cmd in self.session.members() if "/raylet/raylet " in cmd] if self.session else []
        return max(0, len(raylets) - 1)

    def survivors(self) -> list[tuple[int, str]]:
        return self.session.members() if self.session else []

    def stop(self) -> None:
        if self.session:
            self.session.stop()
        subprocess.run(["rm", "-rf", str(self.ray_tmp)], check=False)


# --- the demo -------------------------------------------------------------------------------------

DEMO_PRESET = {
    "description": "cluster demo: digits, a small ResNet9, 1 (fake) GPU per trial",
    "train": {"dataset": "digits", "model": "resnet9", "width": 8, "image_size": 16, "epochs": 4, "batch_size": 64,
              "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5.0e-4, "scheduler": "onecycle",
              "device": "cpu"},
    "search": {"lr": {"loguniform": [1.0e-3, 0.5]}, "weight_decay": {"loguniform": [1.0e-5, 1.0e-2]}},
    "initial": {"lr": 0.05, "weight_decay": 5.0e-4},
    "sweep": {"trials": 6, "grace_period": 1, "reduction_factor": 2, "metric": "val_acc", "mode": "max",
              "concurrency": 2},
    "resources": {"gpu": 1, "cpu": 1},
}


def cli(module: str, *args: str) -> list[str]:
    """A resweep command line (`sweep ...` or `analysis ...`) run by this Python."""
    return [sys.executable, "-m", f"{module}.cli", *args]


class Driver:
    """`sweep run` in its own process group, its output read line by line as it comes."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path):
        self.process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, start_new_session=True)
        self.lines: list[tuple[float, str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def seen(self, text: str) -> float | None:
        return next((t for t, line in self.lines if text in line), None)

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)  # the driver alone: its trials run on the cluster's nodes
        self.process.wait()
        self.reader.join(5)


def newest_checkpoints(run: str) -> dict[str, int]:
    """Per trial folder, the epoch of its newest checkpoint in the bucket."""
    from sweeps.runfolder.layout import CHECKPOINT_DIR, is_trial_folder, trial_folder
    from sweeps.runfolder.storage import list_folder

    found = {}
    for folder, is_dir in list_folder(run):
        if is_dir and is_trial_folder(folder):
            names = [n for n, _ in list_folder(trial_folder(run, folder))]
            epochs = [int(m.group(1)) for n in names if (m := CHECKPOINT_DIR.match(n))]
            found[folder] = max(epochs, default=0)
    return found


def kill_and_resume(s3: S3Server, cluster: FakeCluster, root: Path, index: int, say=print) -> dict[str, Any]:
    """A sweep on the cluster with results in the bucket; its driver SIGKILLed at a random
    moment after a trial's second epoch; then `sweep resume`. What happened, measured."""
    import random

    from sweeps.runfolder.layout import is_trial_folder, trial_folder
    from sweeps.runfolder.results import read_results
    from sweeps.runfolder.run import load_run
    from sweeps.runfolder.storage import list_folder
    from sweeps.runfolder.tunestate import experiment_state

    name, env = f"demo-{index}", cluster.env()
    run = s3.uri(f"runs/{name}")
    say(f"$ sweep run demo.yaml --storage {shlex.quote(s3.uri('runs'))} --name {name}")
    deadline = time.monotonic() + 60
    while cluster.worker_nodes() and time.monotonic() < deadline:  # start from no GPU worker at all
        time.sleep(0.5)
    workers_before = cluster.worker_nodes()
    driver = Driver(cli("sweeps", "run", str(root / "demo.yaml"), "--storage", s3.uri("runs"), "--name", name),
                    env, root)
    first_worker = first_epoch = None
    delay = random.Random(index).uniform(0, 2)
    kill_at = None
    deadline = time.monotonic() + 300
    while driver.process.poll() is None and time.monotonic() < deadline:
        now = time.monotonic()
        if first_worker is None and cluster.worker_nodes() > workers_before:
            first_worker = now
        progress = newest_checkpoints(run)
        if first_epoch is None and any(progress.values()):
            first_epoch = now
        if kill_at is None and any(e >= 2 for e in progress.values()):
            kill_at = now + delay
        if kill_at is not None and now >= kill_at:
            break
        time.sleep(0.1)
    demand = driver.seen("running ")  # printed just before the first trials ask for their GPU
    if driver.process.poll() is not None or demand is None:
        raise RuntimeError("the sweep ended before its driver could be killed:\n"
                           + "\n".join(line for _, line in driver.lines[-30:]))
    at_kill = newest_checkpoints(run)
    driver.kill()
    say(f"  the first trial asked for a GPU; a GPU worker joined {first_worker - demand:.1f} s later and its "
        f"first epoch ended {first_epoch - demand:.1f} s after the ask; the driver was SIGKILLed "
        f"{time.monotonic() - demand:.1f} s in, with {sum(at_kill.values())} epochs checkpointed")
    started = time.monotonic()
    resumed = subprocess.run(cli("sweeps", "resume", run), env=env, cwd=root, capture_output=True, text=True,
                             timeout=600)
    resume_s = time.monotonic() - started
    summary = [line for line in resumed.stdout.splitlines() if line.startswith("trials:")]
    say(f"$ sweep resume {shlex.quote(run)}\n  exit {resumed.returncode} after {resume_s:.1f} s: "
        f"{summary[0] if summary else resumed.stderr.strip()[-300:]}")
    trials = load_run(run).trials
    states = experiment_state(run)
    trained_twice, epochs_seen = {}, {}
    for trial_id in trials["trial_id"]:
        rows = [r for r in read_results(trial_folder(run, states[trial_id]["folder"]), keep_repeats=True)
                if not r.get("failure")]
        trained = [int(r["epoch"]) for r in rows if not r.get("replayed")]
        trained_twice[trial_id] = len(trained) - len(set(trained))
        epochs_seen[trial_id] = sorted({int(r["epoch"]) for r in rows})
    figures = {
        "round": index, "demand_to_worker_s": first_worker - demand, "demand_to_first_epoch_s": first_epoch - demand,
        "resume_s": resume_s, "resume_exit": resumed.returncode, "resume_output": resumed.stdout + resumed.stderr,
        "planned": load_run(run).plan.trials, "trials": len(trials),
        "trial_folders": sum(1 for n, is_dir in list_folder(run) if is_dir and is_trial_folder(n)),
        # trials that started after the killed driver's last saved state yet kept a checkpoint:
        # left out of the sweep (their places sampled anew) and kept as they were
        "kept_aside": sum(1 for n, is_dir in list_folder(run) if is_dir and is_trial_folder(n)
                          and n not in {state["folder"] for state in states.values()}),
        "all_finished": bool((trials["status"] == "TERMINATED").all()),
        "epochs_complete": all(seen == list(range(1, int(t["epochs_trained"]) + 1))
                               for (_, t), seen in zip(trials.iterrows(), epochs_seen.values())),
        "trained_twice": trained_twice, "checkpointed_at_kill": at_kill, "nodes": set(trials["node"]),
    }
    say(f"  {figures['trials']} trials of {figures['planned']} planned, in {figures['trial_folders']} folders "
        f"({figures['kept_aside']} kept aside); all "
        f"finished: {figures['all_finished']}; epochs trained twice: {sum(trained_twice.values())}")
    return figures


def resumed_cleanly(figures: dict[str, Any]) -> bool:
    return (figures["resume_exit"] == 0 and figures["all_finished"] and figures["epochs_complete"]
            and figures["trials"] == figures["planned"] == figures["trial_folders"] - figures["kept_aside"]
            and max(figures["trained_twice"].values(), default=0) <= 1)


def read_back(s3: S3Server, cluster: FakeCluster, root: Path, name: str, say=print) -> dict[str, Any]:
    """status, table and report of a run in the bucket: the endpoint in the URI, or in
    $AWS_ENDPOINT_URL with a plain s3:// URI."""
    env, run = cluster.env(), s3.uri(f"runs/{name}")
    status = subprocess.run(cli("sweeps", "status", run), env=env, cwd=root, capture_output=True, text=True)
    table = subprocess.run(cli("analysis", "table", run, "--format", "csv"), env=env, cwd=root, capture_output=True,
                           text=True)
    plain = subprocess.run(cli("analysis", "table", f"s3://{s3.bucket}/runs/{name}", "--format", "csv"),
                           env={**env, "AWS_ENDPOINT_URL": f"http://{s3.endpoint}"}, cwd=root, capture_output=True,
                           text=True)
    report = subprocess.run(cli("analysis", "report", run), env=env, cwd=root, capture_output=True, text=True,
                            timeout=600)
    folder = root / "reports" / name
    say(f"$ sweep status {shlex.quote(run)}\n  exit {status.returncode}, {len(status.stdout.splitlines())} lines")
    say(f"$ AWS_ENDPOINT_URL=http://{s3.endpoint} analysis table s3://{s3.bucket}/runs/{name}\n"
        f"  exit {plain.returncode}, the same table: {plain.stdout == table.stdout}")
    say(f"$ analysis report {shlex.quote(run)}\n  {report.stdout.strip() or report.stderr.strip()[-300:]}; "
        f"{len(list(folder.glob('*.png')))} pictures")
    return {"status": status, "table": table, "plain_table": plain, "report": report, "report_dir": folder}


def wrong_address(cluster: FakeCluster, root: Path, say=print) -> dict[str, Any]:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    out = subprocess.run(cli("sweeps", "run", str(root / "demo.yaml"), "--address", address, "--storage",
                             str(root / "never")), env=cluster.env(), cwd=root, capture_output=True, text=True,
                         timeout=120)
    seconds = time.monotonic() - started
    say(f"$ sweep run demo.yaml --address {address}\n  exit {out.returncode} after {seconds:.1f} s: "
        f"{out.stderr.strip()}")
    return {"exit": out.returncode, "seconds": seconds, "stdout": out.stdout, "stderr": out.stderr}


def demo(root: Path, rounds: int = 1, say=print) -> dict[str, Any]:
    """The cluster path end to end: rounds of kill-and-resume, then the run read back through
    S3, a wrong address, the GPU workers going once idle, and nothing left running."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "demo.yaml").write_text(yaml.safe_dump(DEMO_PRESET))
    s3 = S3Server(root / "s3").start()
    cluster = FakeCluster(root / "cluster").start()
    say(f"S3 server (moto) at {s3.endpoint}; Ray head at {cluster.address}: no GPU, 1-GPU workers added on demand\n")
    figures: dict[str, Any] = {"rounds": []}
    try:
        for index in range(rounds):
            figures["rounds"].append(kill_and_resume(s3, cluster, root, index, say))
        figures["read_back"] = read_back(s3, cluster, root, f"demo-{rounds - 1}", say)
        figures["wrong_address"] = wrong_address(cluster, root, say)
        deadline = time.monotonic() + 90
        while cluster.worker_nodes() and time.monotonic() < deadline:
            time.sleep(1)
        figures["workers_when_idle"] = cluster.worker_nodes()
        say(f"GPU workers once idle: {figures['workers_when_idle']}")
    finally:
        cluster.stop()
        s3.stop()
    figures["survivors"] = cluster.survivors() + (s3.session.members() if s3.session else [])
    say(f"processes left running: {len(figures['survivors'])}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="sweeps whose driver is killed, then resumed")
    parser.add_argument("--keep", type=Path, default=None, help="folder for the logs and the report (default: temp)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="resweep-cluster-demo-"))
    figures = demo(root, args.rounds)
    rows = figures["rounds"]

    def spread(key: str) -> str:
        values = sorted(r[key] for r in rows)
        return f"median {values[len(values) // 2]:.1f} s (min {values[0]:.1f}, max {values[-1]:.1f})"

    clean = sum(resumed_cleanly(r) for r in rows)
    print(f"\n{len(rows)} rounds: GPU demand to a worker {spread('demand_to_worker_s')}; to a first epoch "
          f"{spread('demand_to_first_epoch_s')}; sweep resume {spread('resume_s')}; epochs trained twice "
          f"{sum(sum(r['trained_twice'].values()) for r in rows)}; resumed cleanly (every trial finished, none "
          f"sampled anew, no epoch missing, exit 0): {clean}/{len(rows)}")
    print(f"logs and report: {root}")


if __name__ == "__main__":
    main()
