"""The quickstart preset's sweep (Optuna TPE + ASHA) against FIFO random search with the same
trials and max epochs, on the digits data: epochs trained, wall time, best validation and
test accuracy, and the peak memory of the driver and of one trial.

ASHA is asynchronous: which trial reaches a rung first depends on timing, so its epoch count
moves from run to run; it runs with several seeds and the mean is compared. FIFO trains
every trial to the end, so its epoch count is fixed and one run suffices.
Ends with `ratio=<fifo epochs / mean asha epochs>`. Goal: ASHA trains at most 40% of the
epochs (ratio >= 2.5) and its best test accuracy is within 0.5 points of FIFO's.

    python benchmarks/sweep_efficiency.py [--samples 12] [--seeds 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.engine.driver import run_sweep  # noqa: E402
from sweeps.planner import make_plan  # noqa: E402
from sweeps.presets import load_preset  # noqa: E402
from sweeps.runfolder.run import load_run  # noqa: E402


def sweep(name: str, storage: str, samples: int, tpe_asha: bool, seed: int) -> dict:
    baseline = {} if tpe_asha else {"setting": "random-initial", "early_stopping": False}
    plan = make_plan(load_preset("quickstart"), overrides=["device=cpu"], samples=samples, concurrency=None,
                     gpus=None, cpus=None, storage=storage, name=f"{name}-{seed}", seed=seed, **baseline)
    start = time.perf_counter()
    run_sweep(plan, local=True)
    wall = time.perf_counter() - start
    run = load_run(plan.path)
    trials = run.trials
    best = trials.sort_values("val_acc", ascending=False).iloc[0]
    # the test accuracy of the best trial that trained to the end (ASHA's stopped ones have none)
    finished = trials[trials["epochs_trained"] == plan.max_epochs].sort_values("val_acc", ascending=False)
    trial_rss = run.history["peak_rss_mb"].max() if "peak_rss_mb" in run.history else float("nan")
    return {"name": name, "seed": seed, "epochs": int(trials["epochs_trained"].sum()), "wall_s": wall,
            "best_val": float(best["val_acc"]), "best_test": float(finished.iloc[0]["test_acc"]),
            "trials": len(trials), "stopped": int(trials["stopped_early"].sum()), "trial_rss_mb": trial_rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=2, help="ASHA sweeps, each with its own seed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as storage:
        ashas = [sweep("tpe-asha", storage, args.samples, True, seed) for seed in range(args.seeds)]
        fifo = sweep("random-fifo", storage, args.samples, False, 0)
    driver_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"quickstart sweep, {args.samples} trials of at most 8 epochs, on CPU ({os.cpu_count()} cores)")
    print(f"{'sweep':<14}{'seed':>5}{'trials':>7}{'stopped':>9}{'epochs':>8}{'wall s':>8}{'best val':>10}"
          f"{'best test':>11}{'trial RSS MiB':>15}")
    for r in (*ashas, fifo):
        print(f"{r['name']:<14}{r['seed']:>5}{r['trials']:>7}{r['stopped']:>9}{r['epochs']:>8}{r['wall_s']:>8.0f}"
              f"{r['best_val']:>10.4f}{r['best_test']:>11.4f}{r['trial_rss_mb']:>15.0f}")
    epochs = [r["epochs"] for r in ashas]
    mean_epochs = sum(epochs) / len(epochs)
    mean_test = sum(r["best_test"] for r in ashas) / len(ashas)
    worst_test = min(r["best_test"] for r in ashas)
    print(f"ASHA trained {mean_epochs / fifo['epochs']:.0%} of FIFO's epochs on average "
          f"({min(epochs) / fifo['epochs']:.0%} to {max(epochs) / fifo['epochs']:.0%}); "
          f"best test accuracy {100 * (mean_test - fifo['best_test']):+.2f} points on average, "
          f"{100 * (worst_test - fifo['best_test']):+.2f} at worst; driver peak RSS {driver_rss:.0f} MiB")
    print(f"ratio={fifo['epochs'] / mean_epochs:.2f}")


if __name__ == "__main__":
    main()
