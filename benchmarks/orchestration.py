"""Seconds of overhead per trial around trivially short trials (one epoch on a few tiny
images): Ray Tune's start, trial start, reporting and the checkpoint, with trial actors
reused and with a new actor per trial. Ends with `ratio=<new actor / reused>` seconds per
trial. Goal: at most 0.5 s of overhead per trial on 2 cores.

    python benchmarks/orchestration.py [--trials 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import ray
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.plan import SweepPlan  # noqa: E402
from sweeps.presets import load_preset  # noqa: E402
from sweeps.rundir import load_run  # noqa: E402
from sweeps.tune import connect, run_sweep  # noqa: E402

TRIVIAL = {
    "description": "trivially short trials",
    "train": {"dataset": "synthetic", "synthetic_samples": 40, "synthetic_classes": 2, "image_size": 8,
              "model": "resnet9", "width": 2, "epochs": 1, "batch_size": 8, "device": "cpu", "eval_test": False},
    "search": {"lr": {"loguniform": [1.0e-3, 1.0e-1]}},
    "sweep": {"trials": 16, "grace_period": 1, "concurrency": 2},
    "resources": {"gpu": 0, "cpu": 1},
}


def timed(folder: str, trials: int, reuse: bool) -> dict:
    path = Path(folder) / "trivial.yaml"
    path.write_text(yaml.safe_dump(TRIVIAL))
    plan = SweepPlan.make(load_preset(str(path)), overrides=[], samples=trials, concurrency=None, gpus=None,
                          cpus=None, storage=folder, name=f"reuse-{reuse}", seed=0)
    start = time.perf_counter()
    connect(None, force_local=True)  # Ray's own start, once per sweep, timed apart
    ray_start = time.perf_counter() - start
    try:
        start = time.perf_counter()
        run_sweep(plan, address=None, force_local=True, reuse_actors=reuse)
        wall = time.perf_counter() - start
    finally:
        ray.shutdown()
    history = load_run(plan.path).history
    compute = float(history["epoch_time_s"].sum())  # the trials' own work, 2 at a time, to subtract
    return {"reuse": reuse, "ray_start_s": ray_start, "wall_s": wall, "compute_s": compute,
            "per_trial_s": (wall - compute / 2) / trials}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        reused = timed(folder, args.trials, reuse=True)
        fresh = timed(folder, args.trials, reuse=False)
    print(f"{args.trials} trivially short trials, 2 at a time, local Ray on CPU ({os.cpu_count()} cores); "
          f"sweep wall time = Tune's start + the trials, Ray's own start apart")
    print(f"{'trial actors':<14}{'ray start s':>12}{'sweep wall s':>14}{'trial work s':>14}{'overhead s/trial':>18}")
    for r in (reused, fresh):
        print(f"{'reused' if r['reuse'] else 'new each':<14}{r['ray_start_s']:>12.1f}{r['wall_s']:>14.1f}"
              f"{r['compute_s']:>14.2f}{r['per_trial_s']:>18.2f}")
    print(f"ratio={fresh['per_trial_s'] / reused['per_trial_s']:.2f}")


if __name__ == "__main__":
    main()
