"""Warm start against a cold start on the quickstart: how many epochs a sweep trains before
it matches an earlier sweep's best (within 0.5 points), when it starts from nothing and when
it starts from that earlier sweep (`sweep run quickstart --warm-start RUN`).

One earlier sweep is run first; then, for each seed, a cold sweep and a warm-started sweep
with that seed. Epochs are counted across the whole sweep in the order they ended (two trials
train at once). A sweep that never matches counts all its epochs (shown with '>').
Ends with `ratio=<cold epochs to match / warm epochs to match>` (means over the seeds).

    python benchmarks/warm_start.py [--seeds 3] [--trials 12] [--epochs 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.engine.driver import run_sweep  # noqa: E402
from sweeps.planner import make_plan  # noqa: E402
from sweeps.presets import load_preset  # noqa: E402
from sweeps.runfolder.run import load_run  # noqa: E402

CLOSE = 0.005  # 0.5 points of an accuracy


def sweep(storage: str, name: str, seed: int, trials: int, epochs: int, warm_from: str | None = None) -> dict:
    overrides = ["device=cpu", f"seed={seed}", f"epochs={epochs}"]
    plan = make_plan(load_preset("quickstart"), overrides=overrides, samples=trials, concurrency=None,
                     gpus=None, cpus=None, storage=storage, name=name, seed=seed, warm_start=warm_from)
    start = time.perf_counter()
    run_sweep(plan, local=True)
    run = load_run(plan.path)
    rows = run.history.dropna(subset=["val_acc"]).sort_values("finished_at", kind="stable")
    return {"path": plan.path, "wall_s": time.perf_counter() - start, "curve": rows["val_acc"].to_numpy(float),
            "best": float(run.trials["val_acc"].max()), "epochs": int(run.trials["epochs_trained"].sum())}


def epochs_to(curve: np.ndarray, target: float) -> tuple[int, bool]:
    """Epochs trained until one reached `target` (all of them, False, where none did)."""
    hits = np.flatnonzero(curve >= target - 1e-9)
    return (int(hits[0]) + 1, True) if len(hits) else (len(curve), False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="cold and warm sweeps, one pair per seed")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--earlier-seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as storage:
        earlier = sweep(storage, "earlier", args.earlier_seed, args.trials, args.epochs)
        target = earlier["best"] - CLOSE
        pairs = []
        for seed in range(100, 100 + args.seeds):
            cold = sweep(storage, f"cold-{seed}", seed, args.trials, args.epochs)
            warm = sweep(storage, f"warm-{seed}", seed, args.trials, args.epochs, warm_from=earlier["path"])
            pairs.append((seed, cold, warm))
    print(f"quickstart, {args.trials} trials of at most {args.epochs} epochs: the earlier sweep (seed "
          f"{args.earlier_seed}) reached val_acc {earlier['best']:.4f} in {earlier['epochs']} epochs; "
          f"matched = within 0.5 points ({target:.4f})")
    print(f"{'seed':>5}{'cold: to match':>16}{'best':>8}{'epochs':>8}{'wall s':>8}"
          f"{'warm: to match':>16}{'best':>8}{'epochs':>8}{'wall s':>8}")
    colds, warms = [], []
    for seed, cold, warm in pairs:
        (c, c_hit), (w, w_hit) = epochs_to(cold["curve"], target), epochs_to(warm["curve"], target)
        colds.append(c)
        warms.append(w)
        print(f"{seed:>5}{('' if c_hit else '>') + str(c):>16}{cold['best']:>8.4f}{cold['epochs']:>8}"
              f"{cold['wall_s']:>8.0f}{('' if w_hit else '>') + str(w):>16}{warm['best']:>8.4f}{warm['epochs']:>8}"
              f"{warm['wall_s']:>8.0f}")
    print(f"epochs to match the earlier best: cold {np.mean(colds):.1f} on average, warm {np.mean(warms):.1f}")
    print(f"ratio={np.mean(colds) / max(np.mean(warms), 1e-9):.2f}")


if __name__ == "__main__":
    main()
