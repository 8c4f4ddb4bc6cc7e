"""Seconds of overhead per trial around trivially short trials (one epoch on a few tiny
images): trial start, reporting and the checkpoint, with trial actors reused and with a new
actor per trial. Each mode runs two sweep sizes; the slope of overhead against trials is
the cost of one more trial, the intercept the one-time cost of a sweep (Tune's start, each
actor's start, the summary). Ends with `ratio=<new actor / reused>` seconds per trial.
Goal: at most 0.5 s of overhead per trial on 2 cores.

    python benchmarks/orchestration.py [--reused 8 32] [--fresh 6 18]
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

from sweeps.cluster import find_cluster  # noqa: E402
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
                          cpus=None, storage=folder, name=f"reuse-{reuse}-{trials}", seed=0)
    start = time.perf_counter()
    connect(find_cluster(local=True))  # Ray's own start, once per sweep, timed apart
    ray_start = time.perf_counter() - start
    try:
        start = time.perf_counter()
        run_sweep(plan, local=True, reuse_actors=reuse)
        wall = time.perf_counter() - start
    finally:
        ray.shutdown()
    history = load_run(plan.path).history
    compute = float(history["epoch_time_s"].sum())  # the trials' own work, 2 at a time, to subtract
    return {"reuse": reuse, "trials": trials, "ray_start_s": ray_start, "wall_s": wall, "compute_s": compute,
            "overhead_s": wall - compute / 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reused", type=int, nargs=2, default=[8, 32], help="two sweep sizes, actors reused")
    parser.add_argument("--fresh", type=int, nargs=2, default=[6, 18], help="two sweep sizes, a new actor per trial")
    args = parser.parse_args()
    rows, fits = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for reuse, sizes in ((True, args.reused), (False, args.fresh)):
            small, large = (timed(folder, n, reuse) for n in sizes)
            rows += [small, large]
            per_trial = (large["overhead_s"] - small["overhead_s"]) / (sizes[1] - sizes[0])
            fits[reuse] = (per_trial, small["overhead_s"] - sizes[0] * per_trial)
    print(f"trivially short trials, 2 at a time, local Ray on CPU ({os.cpu_count()} cores); overhead = sweep wall "
          f"time (Tune's start to the summary written, Ray's own start apart) - trial work / 2")
    print(f"{'trial actors':<14}{'trials':>7}{'ray start s':>12}{'sweep wall s':>14}{'trial work s':>14}"
          f"{'overhead s':>12}")
    for r in rows:
        print(f"{'reused' if r['reuse'] else 'new each':<14}{r['trials']:>7}{r['ray_start_s']:>12.1f}"
              f"{r['wall_s']:>14.1f}{r['compute_s']:>14.2f}{r['overhead_s']:>12.1f}")
    print(f"{'trial actors':<14}{'s per trial':>12}{'s per sweep':>12}{'s per trial in a 16-trial sweep':>33}")
    for reuse, (per_trial, per_sweep) in fits.items():
        print(f"{'reused' if reuse else 'new each':<14}{per_trial:>12.2f}{per_sweep:>12.1f}"
              f"{per_trial + per_sweep / 16:>33.2f}")
    print(f"ratio={fits[False][0] / fits[True][0]:.2f}")


if __name__ == "__main__":
    main()
