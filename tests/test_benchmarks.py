"""Every benchmark script still runs, at smoke sizes, and ends with its `ratio=` line.
Nothing here is timed: the figures come from full-size runs (benchmarks/BENCHMARKS.md). Each
script is a test of its own, so that the session's two lanes (conftest.py) share them out."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

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


def test_every_benchmark_script_has_a_smoke_size():
    assert sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")) == sorted(SMOKE)


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_benchmark_runs_and_ends_with_its_ratio(script, tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *SMOKE[script]], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-1].startswith("ratio="), out.stdout[-2000:]
    ratio = float(lines[-1].removeprefix("ratio="))
    if script == "gpu_throughput.py" and "skipped" in out.stdout:
        assert math.isnan(ratio)  # no CUDA here: it says so rather than printing a figure
    else:
        # a table, then the ratio (its sign is noise at smoke sizes: the orchestration slope over 1-2 trials)
        assert math.isfinite(ratio) and len(lines) >= 3
