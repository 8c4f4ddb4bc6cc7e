"""The dry run's estimate against what a real sweep then measures, on this machine's CPU: the
quickstart's plan is estimated (`sweeps/estimate.py`: the CPU's speed timed on the plan's model,
the data set's image counts, ASHA's share replayed), then run, and its measured seconds per
epoch, epochs trained and CPU-hours set beside the estimate.

The epoch time measured is the trainer's own `epoch_time_s` (a training pass and the
validation pass); the hours are the run's measured epoch times summed (`Run.trial_hours`, what
money is counted on), against the estimate's expected epochs at its epoch time (its per-trial
start and test pass, which nothing measures as epochs, left out of both).
Ends with `ratio=<measured CPU-hours / expected>` (1.0: the estimate was right).

    python benchmarks/cost_estimate.py [--samples 12] [--epochs 8] [--seeds 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.engine.driver import run_sweep  # noqa: E402
from sweeps.estimate import estimate  # noqa: E402
from sweeps.planner import make_plan  # noqa: E402
from sweeps.presets import load_preset  # noqa: E402
from sweeps.runfolder.run import load_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as storage:
        for seed in range(args.seeds):
            plan = make_plan(load_preset("quickstart"), overrides=["device=cpu"], samples=args.samples,
                             concurrency=None, gpus=None, cpus=None, storage=storage, name=f"q-{seed}", seed=seed,
                             epochs=args.epochs)
            est = estimate(plan, gpu=None)
            start = time.perf_counter()
            run_sweep(plan, local=True)
            wall = time.perf_counter() - start
            run = load_run(plan.path)
            measured = run.history[~run.history["replayed"]]["epoch_time_s"]
            share, trained = est.share[0], float(run.trials["epochs_trained"].sum())
            rows.append({"seed": seed, "epoch_est": est.epoch_s, "epoch_real": float(measured.median()),
                         "share_est": share, "share_real": trained / est.epochs_at_most,
                         "hours_est": est.epochs_at_most * share * est.epoch_s * est.units / 3600,
                         "hours_real": run.trial_hours, "wall": wall})
    print(f"quickstart, {args.samples} trials of at most {args.epochs} epochs, 2 at a time on this CPU; "
          f"estimate: epoch time from a timed training step, ASHA's share replayed")
    print(f"{'seed':>4}{'epoch s est':>13}{'measured':>10}{'share est':>11}{'real':>7}{'CPU-h est':>11}"
          f"{'measured':>10}{'wall s':>8}")
    for r in rows:
        print(f"{r['seed']:>4}{r['epoch_est']:>13.3f}{r['epoch_real']:>10.3f}{r['share_est']:>11.0%}"
              f"{r['share_real']:>7.0%}{r['hours_est']:>11.4f}{r['hours_real']:>10.4f}{r['wall']:>8.0f}")
    ratio = statistics.median(r["hours_real"] / r["hours_est"] for r in rows)
    epoch = statistics.median(r["epoch_real"] / r["epoch_est"] for r in rows)
    print(f"median measured / estimated: epoch time {epoch:.2f}, CPU-hours {ratio:.2f}")
    print(f"ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
