"""The benchmark scripts at smoke sizes, run in the background (tests/test_benchmarks.py reads
their output). conftest.py starts them as the session begins, two at a time, while the modules
without slow tests run, and waits for them before the first module with slow tests: those keep
the machine to themselves. Most of a smoke run is Ray starting and Tune waiting, not computing."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = {
    "trainer_overhead.py": ["--rounds", "1", "--samples", "256", "--width", "4"],
    "data_pipeline.py": ["--images", "24", "--workers", "1"],
    "sweep_efficiency.py": ["--samples", "2", "--seeds", "1"],
    "orchestration.py": ["--reused", "1", "2", "--fresh", "1", "2", "--scale", "2", "--scale-epochs", "1"],
    "gpu_throughput.py": ["--images", "64", "--rounds", "1"],
    "storage_sync.py": ["--trials", "2", "--epochs", "2", "--periods", "10"],
    "asha_replay.py": ["--orders", "20"],
    "pareto_asha.py": ["--draws", "5"],
    "warm_start.py": ["--seeds", "1", "--trials", "1", "--epochs", "1"],
    "cpu_step.py": ["--smoke-test"],
    "export_latency.py": ["--smoke-test"],
    "multi_objective.py": ["--seeds", "1", "--samples", "2", "--epochs", "1"],
    "peers.py": ["--smoke-test"],
    "search_settings.py": ["--seeds", "2", "--trials", "8"],
    "cost_estimate.py": ["--samples", "2", "--epochs", "2", "--seeds", "1"],
    "pbt.py": ["--problems", "digits-folder", "--seeds", "1", "--trials", "2", "--epochs", "2", "--interval", "1"],
}
# each half a minute or more at smoke size (real sweeps on Ray): started first, so the two lanes end together
LONGEST = ["orchestration.py", "pbt.py", "peers.py", "warm_start.py", "sweep_efficiency.py", "multi_objective.py",
           "storage_sync.py", "cost_estimate.py"]


def _smoke_run(script: str, folder: Path, walls: dict[str, tuple[float, float]]) -> subprocess.CompletedProcess:
    folder.mkdir()
    started = time.monotonic()
    try:
        return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *SMOKE[script]], cwd=folder,
                              capture_output=True, text=True, timeout=600)
    finally:
        walls[script] = (started, time.monotonic())


class SmokeRuns:
    """Every script of SMOKE started in two lanes, the longest first; `result(script)` waits for one."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="rsw-bench-"))
        self._pool = ThreadPoolExecutor(max_workers=2)
        self._started = time.monotonic()
        self.walls: dict[str, tuple[float, float]] = {}  # script -> (start, end), on the monotonic clock
        order = sorted(SMOKE, key=lambda s: LONGEST.index(s) if s in LONGEST else len(LONGEST))
        self.runs: dict[str, Future] = {
            s: self._pool.submit(_smoke_run, s, self.folder / s.removesuffix(".py"), self.walls) for s in order}
        self.waited: tuple[float, float] | None = None  # when the first slow module began to wait, and ended

    def result(self, script: str) -> subprocess.CompletedProcess:
        return self.runs[script].result()

    def wait(self) -> None:
        began = time.monotonic()
        wait(self.runs.values())
        if self.waited is None:
            self.waited = (began, time.monotonic())

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)  # an interrupted session starts no more
        shutil.rmtree(self.folder, ignore_errors=True)

    def timeline(self) -> str:
        """When each run started and ended, in seconds from the session's start: where CI's time goes."""
        spans = sorted((a - self._started, b - self._started, s) for s, (a, b) in self.walls.items())
        waited = f"; the slow modules waited for them {self.waited[0] - self._started:.0f}-" \
            f"{self.waited[1] - self._started:.0f} s" if self.waited else ""
        return "smoke runs: " + ", ".join(f"{s} {a:.0f}-{b:.0f} s" for a, b, s in spans) + waited
