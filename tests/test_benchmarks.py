"""Every benchmark script still runs, at smoke sizes, and ends with its `ratio=` line.
Nothing here is timed: the figures come from full-size runs (benchmarks/BENCHMARKS.md). The
runs are tests/smoke.py's, started in the background as the session begins."""

import math
from pathlib import Path

import pytest
from smoke import SMOKE, SmokeRuns

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_every_benchmark_script_has_a_smoke_size():
    assert sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")) == sorted(SMOKE)


@pytest.fixture(scope="module")
def smoke_runs(request) -> SmokeRuns:
    """The runs conftest.py started as the session began; started here where it did not."""
    started = getattr(request.config, "smoke_runs", None)
    if started is not None:
        return started
    runs = SmokeRuns()
    request.addfinalizer(runs.close)
    return runs


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_benchmark_runs_and_ends_with_its_ratio(script, smoke_runs):
    out = smoke_runs.result(script)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-1].startswith("ratio="), out.stdout[-2000:]
    ratio = float(lines[-1].removeprefix("ratio="))
    if script == "gpu_throughput.py" and "skipped" in out.stdout:
        assert math.isnan(ratio)  # no CUDA here: it says so rather than printing a figure
    else:
        # a table, then the ratio (its sign is noise at smoke sizes: the orchestration slope over 1-2 trials)
        assert math.isfinite(ratio) and len(lines) >= 3
