"""The benchmark scripts' smoke runs (tests/test_benchmarks.py), run in the background while
the other slow tests run.

A smoke run is mostly Ray starting and Tune waiting, and so is much of the slow suite (store
outages, node kills, backoffs): one lane of them beside the suite costs it little, where run
after it they were the suite's longest three minutes. The lane starts with the first slow test
(tests/conftest.py orders the fast ones first, the benchmark tests last, so that time-bounded
fast tests run on a quiet machine); a second lane joins when the benchmark tests are reached and
nothing else runs. Each script gets its own folder and its own Ray temp folder, so it never
finds another test's Ray instance, and every process a run started is ended with the session."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = {
    "trainer_overhead.py": ["--rounds", "1", "--samples", "256", "--width", "4"],
    "data_pipeline.py": ["--images", "24", "--workers", "1"],
    "sweep_efficiency.py": ["--samples", "2", "--seeds", "1"],
    "orchestration.py": ["--reused", "2", "4", "--fresh", "1", "2", "--scale", "2", "--scale-epochs", "1"],
    "gpu_throughput.py": ["--images", "64", "--rounds", "1"],
    "storage_sync.py": ["--trials", "2", "--epochs", "2", "--periods", "10"],
    "asha_replay.py": ["--orders", "20"],
    "warm_start.py": ["--seeds", "1", "--trials", "1", "--epochs", "1"],
    "cpu_step.py": ["--smoke-test"],
    "export_latency.py": ["--smoke-test"],
    "multi_objective.py": ["--seeds", "1", "--samples", "2", "--epochs", "1"],
    "peers.py": ["--smoke-test"],
    "search_settings.py": ["--seeds", "2", "--trials", "8"],
}
# the longest first (real sweeps on Ray, a minute or so each at smoke size), so that lanes end together
LONGEST = ["peers.py", "orchestration.py", "warm_start.py", "sweep_efficiency.py", "multi_objective.py",
           "storage_sync.py"]
TIMEOUT_S = 600


class SmokeRuns:
    """Every script's smoke run, each a Future of its CompletedProcess, run by lanes (threads)
    taking scripts in turn from one queue."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="smoke-"))
        self.futures: dict[str, Future] = {script: Future() for script in SMOKE}
        self._todo: queue.Queue[str] = queue.Queue()
        for script in sorted(SMOKE, key=lambda s: LONGEST.index(s) if s in LONGEST else len(LONGEST)):
            self._todo.put(script)
        self._lanes: list[threading.Thread] = []
        self._running: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def add_lane(self) -> None:
        lane = threading.Thread(target=self._lane, daemon=True)
        self._lanes.append(lane)
        lane.start()

    @property
    def lanes(self) -> int:
        return len(self._lanes)

    def _lane(self) -> None:
        while True:
            try:
                script = self._todo.get_nowait()
            except queue.Empty:
                return
            future = self.futures[script]
            try:
                future.set_result(self._run(script))
            except Exception as err:  # a timeout, a script that cannot start: the test reports it
                future.set_exception(err)

    def _run(self, script: str) -> subprocess.CompletedProcess:
        folder = self.root / script.removesuffix(".py")
        folder.mkdir()
        # short, and this run's own: a script's Ray never joins another test's
        env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="rsb-", dir="/tmp")}
        command = [sys.executable, str(ROOT / "benchmarks" / script), *SMOKE[script]]
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True)
        with self._lock:
            self._running[script] = process
        try:
            out, err = process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _end_group(process)
            out, err = process.communicate()
            err += f"\n(smoke run ended after {TIMEOUT_S} s)"
        finally:
            with self._lock:
                self._running.pop(script, None)
        return subprocess.CompletedProcess(command, process.returncode, out, err)

    def close(self) -> None:
        """End the runs under way, and every process they started; the queued ones never start."""
        while not self._todo.empty():
            try:
                self._todo.get_nowait()
            except queue.Empty:
                break
        with self._lock:
            running = list(self._running.values())
        for process in running:
            _end_group(process)


def _end_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


_RUNS: SmokeRuns | None = None


def smoke_runs() -> SmokeRuns:
    """The session's smoke runs, started (one lane) on first use."""
    global _RUNS
    if _RUNS is None:
        _RUNS = SmokeRuns()
        _RUNS.add_lane()
    return _RUNS


def close() -> None:
    if _RUNS is not None:
        _RUNS.close()
