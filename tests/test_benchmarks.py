"""Every benchmark script still runs, at smoke sizes, and ends with its `ratio=` line.
Nothing here is timed: the figures come from full-size runs (benchmarks/BENCHMARKS.md). The
runs go in the background beside the other slow tests (tests/smokeruns.py): most of a smoke
run is Ray starting and Tune waiting, not computing."""

import math
from concurrent.futures import Future
from pathlib import Path

import pytest
import smokeruns
from smokeruns import SMOKE

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_every_benchmark_script_has_a_smoke_size():
    assert sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")) == sorted(SMOKE)


@pytest.fixture(scope="module")
def smoke_runs() -> dict[str, Future]:
    runs = smokeruns.smoke_runs()  # under way since the first slow test, where the whole suite runs
    if runs.lanes < 2:
        runs.add_lane()  # nothing else runs from here on
    return runs.futures


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_benchmark_runs_and_ends_with_its_ratio(script, smoke_runs):
    out = smoke_runs[script].result()
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-1].startswith("ratio="), out.stdout[-2000:]
    ratio = float(lines[-1].removeprefix("ratio="))
    if script == "gpu_throughput.py" and "skipped" in out.stdout:
        assert math.isnan(ratio)  # no CUDA here: it says so rather than printing a figure
    else:
        # a table, then the ratio (its sign is noise at smoke sizes: the orchestration slope over 1-2 trials)
        assert math.isfinite(ratio) and len(lines) >= 3
