"""Chaos under load (tests/chaos.py): 12 trials (`make chaos`: 24), 4 at a time on autoscaled
fake GPU workers, the S3 store away twice for 27-30 s (longer than the 25 s that once ended a
sweep) and a worker node killed every 20-40 s, one of them during each outage. Every strike is
survived with nothing lost."""

import subprocess
import sys
from pathlib import Path

import pytest
from chaos import run_sweep

TRIALS = 12
HARNESS = Path(__file__).resolve().parent / "chaos.py"


def test_the_harness_runs_as_make_chaos_runs_it(tmp_path):
    """`make chaos` runs tests/chaos.py as a script, from anywhere: it finds tools/ by itself."""
    out = subprocess.run([sys.executable, str(HARNESS), "--help"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "--runs" in out.stdout, out.stderr[-2000:]


@pytest.mark.slow
def test_a_sweep_survives_node_kills_and_store_outages_under_load_with_nothing_lost(tmp_path):
    # make chaos: 24 trials, outages of 30-60 s 40-70 s apart; here the same strikes, closer together
    figures = run_sweep(tmp_path, "chaos", seed=7, disturbed=True, trials=TRIALS, outage_s=(27, 30), gap_s=(8, 12))
    detail = figures["output"][-3000:]
    assert figures["exit"] == 0, detail
    assert figures["kills"] >= 2 and figures["kills_during_outages"] >= 1 and len(figures["outages"]) == 2, \
        "the chaos struck as planned"
    assert all(27 <= b - a for a, b in figures["outages"])
    assert figures["trials"] == figures["planned"] == figures["trial_folders"] == TRIALS, \
        "no trial sampled anew"
    assert figures["terminated"] == figures["trials"], detail
    assert figures["missing"] == 0, "every epoch of every trial is in its results"
    assert not figures["over"], f"trained again more than one epoch per node lost: {figures['over']}"
    assert figures["retries"] == 0, "no strike used up a retry meant for the trial's own errors"
    assert figures["node_losses"] >= 1
    assert figures["report_exit"] == 0, figures["report"][-2000:]
    assert f"0 retries, {figures['node_losses']} node losses" in figures["report_text"], "the report counts the moves"
    # said once each, as resweep says it: the store away and back, each lost node; no traceback
    assert "does not answer since" in figures["output"] and "answers again after" in figures["output"]
    assert figures["output"].count("lost its node") == figures["node_losses"]
    assert "Traceback" not in figures["output"], detail
    assert not figures["survivors"], f"left running: {figures['survivors']}"
