"""A sweep's budget: its forms, its two rules on hand-computed cases, and the limits refused
before anything starts (the sweeps that reach a budget and resume: tests/test_sweep.py)."""

import time

import pytest
from conftest import preset
from typer.testing import CliRunner

from sweeps.budget import BudgetLimit, Ledger, parse_budget
from sweeps.cli import app
from sweeps.errors import SweepError
from sweeps.planner import make_plan
from sweeps.presets import PresetError, load_preset


def plan_of(tmp_path, budget=None, price=None, **kwargs):
    return make_plan(load_preset(preset(tmp_path, **kwargs)), [], None, None, None, None, str(tmp_path / "runs"),
                     None, None, price_per_hour=price, budget=budget)


@pytest.mark.parametrize("text, amount, unit", [("25usd", 25, "usd"), ("$25", 25, "usd"), ("2.5 USD", 2.5, "usd"),
                                                ("6gpu-h", 6, "gpu-h"), ("6 GPU-hours", 6, "gpu-h"),
                                                ("0.5cpu-h", 0.5, "cpu-h"), ("1e-3usd", 0.001, "usd")])
def test_a_budget_is_an_amount_and_its_unit(text, amount, unit):
    assert BudgetLimit.read(text) == BudgetLimit(amount, unit)


@pytest.mark.parametrize("text, on_gpu, price, says", [
    ("25", True, 1.0, "give an amount and its unit"), ("25eur", True, 1.0, "give an amount and its unit"),
    ("0usd", True, 1.0, "above 0"), ("6cpu-h", True, 1.0, "give the budget in gpu-h or usd"),
    ("6gpu-h", False, 1.0, "give the budget in cpu-h or usd"), ("25usd", True, 0.0, "pass --price-per-hour")])
def test_a_budget_that_does_not_fit_the_sweep_is_one_line_naming_the_fix(text, on_gpu, price, says):
    with pytest.raises(SweepError, match=says) as err:
        parse_budget(text, on_gpu, price)
    assert "\n" not in str(err.value)


def test_money_is_counted_in_hours_at_the_price():
    assert BudgetLimit(25, "usd").hours(2.0) == 12.5 and BudgetLimit(6, "gpu-h").hours(2.0) == 6
    assert BudgetLimit(1, "usd").scaled(0.02457) == BudgetLimit(0.025, "usd")  # rounded up, never down
    assert BudgetLimit(1, "cpu-h").scaled(12.01) == BudgetLimit(13, "cpu-h")


def test_no_trial_starts_whose_worst_case_with_the_live_ones_passes_the_limit():
    # an hour's budget; a trial trains at most 4 epochs, estimated at 900 s (a quarter hour) each
    ledger = Ledger(limit=1.0, units=1, max_epochs=4, estimate_epoch_s=900)
    assert ledger.can_start()  # 4 x 0.25 h = the whole hour
    ledger.add("a")
    assert not ledger.can_start()  # a's worst case is the hour already
    # a trains its first epoch in 450 s: spent 0.125 h, a's three left 0.375 h, a new trial's four
    # at the measured 450 s 0.5 h: 1.0 h in all, which fits
    assert not ledger.on_result("a", {"epoch": 1, "epoch_time_s": 450.0})
    assert ledger.spent == pytest.approx(0.125) and ledger.committed() == pytest.approx(0.375)
    assert ledger.can_start()
    ledger.end("a")  # stopped early: nothing committed any more
    assert ledger.committed() == 0


def test_running_trials_stop_after_the_epoch_that_reaches_the_limit_and_never_start_again():
    ledger = Ledger(limit=1.0, units=1, max_epochs=8, estimate_epoch_s=900)
    for trial in ("a", "b"):
        ledger.started(trial)
    epoch = {"epoch_time_s": 900.0}
    assert not ledger.on_result("a", {**epoch, "epoch": 1})  # 0.25 spent + a's next and b's: 0.75
    assert not ledger.on_result("b", {**epoch, "epoch": 1})  # 0.5 + 0.5 = the limit, not past it
    assert ledger.on_result("a", {**epoch, "epoch": 2})  # 0.75 + 0.5 would pass it: a pauses
    ledger.paused("a")
    assert ledger.reached and not ledger.can_start()
    assert ledger.on_result("b", {**epoch, "epoch": 2})  # b, once its epoch in flight is done
    assert ledger.spent == pytest.approx(1.0)  # never past the limit by more than those epochs


def test_replays_cost_nothing_and_what_earlier_drivers_spent_counts():
    # the run folder counted a's epoch 1 before this driver: 0.5 unit-hours
    ledger = Ledger(limit=1.0, units=2, max_epochs=5, estimate_epoch_s=600, before=0.5, counted={"a": {1}})
    # a restarted trial reports its stored epochs again: not spent twice, never paused
    assert not ledger.on_result("a", {"epoch": 1, "epoch_time_s": 600.0, "replayed": True})
    assert ledger.spent == 0.5 and ledger.live["a"].epochs == 1
    # ... but an epoch the killed driver trained and never copied to the run folder was paid for
    assert not ledger.on_result("b", {"epoch": 1, "epoch_time_s": 90.0, "replayed": True})
    assert ledger.spent == pytest.approx(0.5 + 90 * 2 / 3600)
    ledger.end("b")
    ledger.before = 0.5
    # two units (GPUs) a trial: an epoch of 600 s costs a third of an hour; with a's next it passes
    assert ledger.on_result("a", {"epoch": 2, "epoch_time_s": 600.0})
    assert ledger.spent == pytest.approx(0.5 + 1 / 3)


def test_a_trial_s_last_epoch_and_a_sweep_without_budget_never_pause():
    ledger = Ledger(limit=0.01, units=1, max_epochs=2, estimate_epoch_s=900)
    ledger.started("a")
    assert not ledger.on_result("a", {"epoch": 2, "epoch_time_s": 900.0})  # it ends by itself
    free = Ledger(limit=0, units=1, max_epochs=2, estimate_epoch_s=900, before=100)
    assert free.can_start() and not free.on_result("a", {"epoch": 1, "epoch_time_s": 1e6})


def test_a_budget_below_one_epoch_or_one_trial_is_refused_before_anything_starts(tmp_path):
    runs = tmp_path / "runs"
    for budget, says in (("1e-7cpu-h", "one epoch of a trial costs about"), ("2e-4cpu-h", "no trial starts unless")):
        start = time.monotonic()
        result = CliRunner().invoke(app, ["run", preset(tmp_path, epochs=20), "--local", "--storage", str(runs),
                                          "--budget", budget])
        assert result.exit_code != 0 and says in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
        assert time.monotonic() - start < 30 and not runs.exists()  # nothing written, Ray never started


def test_the_plan_records_its_estimate_and_budget_and_the_dry_run_says_what_it_buys(tmp_path):
    plan = plan_of(tmp_path, budget="0.5usd", price=2.0)
    assert plan.budget == "0.5usd" and plan.budget_hours == pytest.approx(0.25)
    assert 0 < plan.estimate_epoch_s and 0 < plan.estimate_hours <= plan.estimate_most_hours
    # the epochs alone, as spent measures them: trials x epochs x seconds at most
    assert plan.estimate_most_hours == pytest.approx(plan.trials * plan.max_epochs * plan.estimate_epoch_s / 3600)
    assert plan_of(tmp_path).estimate_epoch_s == 0  # no price, no budget: no estimate made
    dry = CliRunner().invoke(app, ["run", preset(tmp_path), "--dry-run", "--storage", str(tmp_path / "runs"),
                                   "--price-per-hour", "2", "--budget", "0.5usd"])
    assert dry.exit_code == 0 and "budget          0.5usd (0.25 CPU-hours = $0.5): pays ~" in dry.output, dry.output


def test_a_preset_s_budget_and_price_are_the_plan_s_unless_the_command_line_says_otherwise(tmp_path):
    plan = plan_of(tmp_path, sweep={"budget": "$1", "price_per_hour": 4.0})
    assert plan.price_per_hour == 4.0 and plan.price_source == "the preset's price_per_hour"
    assert plan.budget_hours == pytest.approx(0.25)
    assert plan_of(tmp_path, budget="0.5cpu-h", sweep={"budget": "$1", "price_per_hour": 4.0}).budget_hours == 0.5
    with pytest.raises(PresetError, match="give its unit too"):
        load_preset(preset(tmp_path, sweep={"budget": 25}))
    with pytest.raises(SweepError, match="sweep.budget 1usd: the sweep has no price"):
        plan_of(tmp_path, sweep={"budget": "1usd"})


def test_status_says_the_budget_s_share_and_a_spent_budget_is_not_resumed_without_more(tmp_path):
    from conftest import handmade_run

    # the handmade run spent 23 s of CPU (0.0064 CPU-hours) at $3 a CPU-hour; its budget: 0.002 CPU-hours
    plan, root = handmade_run(tmp_path, price_per_hour=3.0, price_source="--price-per-hour", budget="0.002cpu-h",
                              budget_hours=0.002)
    status = CliRunner().invoke(app, ["status", str(root)])
    assert status.exit_code == 0 and "of the budget ($0.006)" in status.output, status.output
    files = sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file())
    start = time.monotonic()
    resumed = CliRunner().invoke(app, ["resume", str(root), "--local"])
    assert resumed.exit_code != 0 and len(resumed.output.strip().splitlines()) == 1, resumed.output
    assert "the run's --budget 0.002cpu-h: this run has spent" in resumed.output and "give at least" in resumed.output
    assert time.monotonic() - start < 30
    assert sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()) == files  # nothing written


def test_a_preset_s_price_must_be_a_number_above_0(tmp_path):
    with pytest.raises(PresetError, match="sweep.price_per_hour=-1.0 must be a number above 0"):
        load_preset(preset(tmp_path, sweep={"price_per_hour": -1}))
