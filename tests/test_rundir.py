"""The run-folder reader, fast: a run folder written by hand in the format Tune and the trials
write (no Ray), with one trial of each ending, read back by `load_run`; its `outcome()` is
what both `sweep run`'s summary and the report count; `export_study` writes each ending as
the Optuna state the dashboard shows."""

import re

import pytest
from conftest import TRIALS, handmade_run

from sweeps.runfolder.run import Outcome, load_run
from sweeps.runfolder.study import export_study


@pytest.fixture
def run_folder(tmp_path):
    return handmade_run(tmp_path)


def test_load_run_reads_each_ending_and_counts_it_once(run_folder):
    plan, root = run_folder
    run = load_run(str(root))
    assert list(run.trials["trial_id"]) == list(TRIALS)  # in the order Tune created them
    rows = run.trials.set_index("trial_id")
    # the best epoch is epoch 3 (0.9), but only epochs 2 and 4 kept their checkpoints: the best kept is 4 (0.8)
    assert rows.loc["aaaa", "val_acc"] == 0.9 and rows.loc["aaaa", "best_epoch"] == 3
    assert rows.loc["aaaa", "checkpoint"].endswith("trial_aaaa/checkpoint_000004")
    assert rows.loc["aaaa", "epochs_trained"] == 4 and not rows.loc["aaaa", "stopped_early"]
    assert rows.loc["aaaa", "time_s"] == 8.0
    assert rows.loc["bbbb", "stopped_early"] and rows.loc["bbbb", "epochs_trained"] == 1
    # the cost comes with the first epoch: trials stopped early have it too
    assert rows.loc["aaaa", "params"] == 1000 and rows.loc["bbbb", "latency_ms"] == 1.0
    assert rows.loc["cccc", "failure"] == "diverged" and rows.loc["cccc", "error"] == "the loss is nan at epoch 3"
    assert not rows.loc["cccc", "stopped_early"] and rows.loc["cccc", "epochs_trained"] == 2
    assert rows.loc["dddd", "status"] == "ERROR" and rows.loc["dddd", "error"] == "RuntimeError: boom"
    assert rows.loc["dddd", "retries"] == 2
    assert rows.loc["aaaa", "node_losses"] == 3 and rows.loc["aaaa", "retries"] == 0  # moves, not failures
    # the replayed epoch 1 never replaces the first report of it
    eeee = run.history[run.history["trial_id"] == "eeee"].sort_values("epoch")
    assert list(eeee["epoch"]) == [1, 2] and list(eeee["val_acc"]) == [0.6, 0.65]
    assert rows.loc["eeee", "val_acc"] == 0.65

    # an older run folder's per-epoch `lr` reads as today's `epoch_lr`
    assert "lr" not in run.history and run.history["epoch_lr"].notna().all() and len(run.history) == 9

    assert run.outcome() == Outcome(trained_to_end=1, stopped_early=1, diverged=1, out_of_memory=0, errored=1,
                                    unfinished=1, not_started=1, retries=2, node_losses=3)
    assert run.outcome().trials == plan.trials == 6


def test_the_summary_and_the_report_count_the_same_outcome(run_folder, tmp_path):
    from analysis.report import write_report
    from sweeps.engine.driver import summarize

    plan, root = run_folder
    summary = summarize(plan)
    assert summary.outcome == load_run(str(root)).outcome()
    assert (summary.outcome.trained_to_end, summary.outcome.stopped_early, summary.outcome.diverged,
            summary.outcome.errored, summary.outcome.unfinished, summary.outcome.not_started) == (1, 1, 1, 1, 1, 1)
    assert summary.interrupted and summary.best.trial_id == "aaaa" and summary.best.value == 0.9
    report = write_report(str(root), tmp_path / "report").read_text()
    assert ("- trials: 5 — 1 completed, 1 stopped early by ASHA, 1 errored, 1 diverged, 1 still running or pending; "
            "2 retries, 3 node losses (spot reclaims: continued elsewhere)") in report
    # the sections, in order (the test section is there: its checkpoint folder is empty, so it says why not)
    assert [line for line in report.splitlines() if line.startswith("## ")] == [
        "## Top 5 trials", "## Learning curves", "## Hyperparameters", "## Best model on the test split (trial `aaaa`)"]
    assert "The test split could not be evaluated here:" in report
    assert "- **best: trial `aaaa`, val_acc = 0.9000** after 4 epochs, with `lr=0.1`, `weight_decay=0.0001`" in report
    header = next(line for line in report.splitlines() if line.startswith("| trial_id"))
    assert [cell.strip() for cell in header.strip("|").split("|")] == [
        "trial_id", "status", "epochs_trained", "val_acc", "stopped_early", "test_acc (last epoch)", "params",
        "latency_ms", "lr", "weight_decay"]


def test_run_folder_names_are_written_in_layout_alone():
    """Every run-folder file name is spelled in sweeps/runfolder/layout.py and nowhere else in the product."""
    import re
    from pathlib import Path

    import sweeps.runfolder.layout as layout

    names = [layout.PLAN_FILE, layout.STATE_ARCHIVE, layout.STATE_PREFIX, layout.PARAMS_FILE, layout.RESULT_FILE,
             layout.ERROR_FILE, layout.OPTUNA_DB, layout.REPORT_FILE, layout.TRIAL_PREFIX, "checkpoint_"]
    root = Path(layout.__file__).parents[2]
    found = []
    for source in [*root.glob("sweeps/**/*.py"), *root.glob("analysis/**/*.py"), *root.glob("trainer/**/*.py")]:
        if source.name == "layout.py":
            continue
        for number, line in enumerate(source.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            for name in names:
                if re.search(rf"[\"']{re.escape(name)}[\"'{{\d]", code):  # the name, or a prefix then a value
                    found.append(f"{source.relative_to(root)}:{number}: {name}")
    assert not found, found
    assert len([*root.glob("sweeps/**/*.py")]) > 20, "the product's modules were read"


def test_export_study_writes_each_ending_as_its_optuna_state(run_folder):
    import optuna

    plan, root = run_folder
    db = export_study(load_run(str(root)))
    study = optuna.load_study(study_name=plan.name, storage=f"sqlite:///{db}")
    states = {t.user_attrs["trial_id"]: t for t in study.get_trials()}
    assert set(states) == {"aaaa", "bbbb", "cccc", "dddd"}  # the running trial is left out
    assert states["aaaa"].state.name == "COMPLETE" and states["aaaa"].value == 0.9
    assert states["aaaa"].intermediate_values == {1: 0.5, 2: 0.7, 3: 0.9, 4: 0.8}
    assert states["bbbb"].state.name == "PRUNED" and states["bbbb"].intermediate_values == {1: 0.4}
    assert states["cccc"].state.name == "FAIL" and states["dddd"].state.name == "FAIL"
    assert states["aaaa"].params == {"lr": 0.1, "weight_decay": 1e-4}


def test_the_money_spent_counts_every_epoch_trained_once_and_no_replay(tmp_path):
    """Spent is measured time x price: each epoch row a trial trained counts (one trained twice,
    after a crash, twice: it was paid for twice), an epoch a restarted trial reported again from
    its checkpoint (`replayed`) not at all. The report and the summary say it in money."""
    import json

    from analysis.report import write_report
    from sweeps.engine.driver import summarize

    plan, root = handmade_run(tmp_path, price_per_hour=3.0, price_source="--price-per-hour", estimate_hours=0.01,
                              estimate_most_hours=0.02, budget="0.1usd", budget_hours=0.1 / 3)
    result = root / "trial_aaaa" / "result.json"
    lines = result.read_text().splitlines()
    again = {**json.loads(lines[1]), "epoch_time_s": 5.0}  # epoch 2 trained again after a crash
    result.write_text("\n".join([*lines[:2], json.dumps(again), *lines[2:]]) + "\n")
    run = load_run(str(root))
    # 2 s per epoch row: aaaa 4 + the retrained one (5 s), bbbb 1, cccc 2, eeee 2 (its replay: nothing)
    assert run.trials.set_index("trial_id").loc["aaaa", "time_s"] == 4 * 2.0 + 5.0
    assert run.trial_hours == pytest.approx((13 + 2 + 4 + 4) / 3600) and plan.units == 1
    assert run.spent == pytest.approx(run.trial_hours * 3.0)
    # a trial still running and one not started: the forecast adds their epochs at the measured pace
    assert run.forecast() > run.spent
    money = f"${run.spent:.3g}"
    assert money in summarize(plan).cost
    # against the plan's estimate of its epochs, and in the report against its budget too
    assert "the plan estimated $0.03 for its epochs (at most $0.06)" in summarize(plan).cost
    report = write_report(str(root), tmp_path / "report").read_text()
    assert f"**{money} spent**" in report and "the plan estimated $0.03" in report
    assert f"budget $0.1, {run.trial_hours / (0.1 / 3):.0%} spent" in report
    bought = next(line for line in report.splitlines() if line.startswith("- what the compute bought"))
    hours, dollars = re.search(r"of ([0-9.e-]+) CPU-hours \(\$([0-9.e-]+)\)", bought).groups()
    assert float(dollars) == pytest.approx(float(hours) * 3.0, rel=0.01), bought  # in money too


def test_a_resumed_driver_s_replays_stand_for_the_epochs_an_earlier_driver_trained():
    """A resumed sweep's driver writes an unfinished trial's result file anew (Tune restores it
    only for trials with Tune checkpoints): the epochs the earlier driver trained are there only
    as the trial's replays of its checkpoint, with their own measured times. They were paid for."""
    from sweeps.runfolder.results import trained_rows

    rows = [{"epoch": 1, "epoch_time_s": 2.0, "replayed": True}, {"epoch": 2, "epoch_time_s": 3.0, "replayed": True},
            {"epoch": 3, "epoch_time_s": 4.0}]
    assert [r["epoch"] for r in trained_rows(rows)] == [1, 2, 3]
    # within one driver (a retry), the trained rows are still there: the replays cost nothing
    retried = [{"epoch": 1, "epoch_time_s": 2.0}, {"epoch": 1, "epoch_time_s": 2.0, "replayed": True},
               {"epoch": 2, "epoch_time_s": 3.0}, {"epoch": 2, "epoch_time_s": 5.0}]
    assert [r["epoch_time_s"] for r in trained_rows(retried)] == [2.0, 3.0, 5.0]  # epoch 2 trained twice
    # a trial resumed twice replays epoch 1 twice: it stands once
    assert len(trained_rows([{"epoch": 1, "epoch_time_s": 2.0, "replayed": True}] * 2)) == 1
