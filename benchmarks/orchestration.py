"""Seconds of overhead per trial around trivially short trials (one epoch on a few tiny
images): trial start, reporting and the checkpoint, with trial actors reused and with a new
actor per trial. Each mode runs two sweep sizes; the slope of overhead against trials is
the cost of one more trial, the intercept the one-time cost of a sweep (Tune's start, each
actor's start, the summary). Ends with `ratio=<new actor / reused>` seconds of overhead per
trial in a 16-trial sweep (the slope alone is noise once reuse makes it near zero).
Goal: at most 0.5 s of overhead per trial on 2 cores.

Then scale: sweeps of 16, 256 and 1,000 trivially short multi-epoch trials (4 epochs, a
checkpoint per epoch, ASHA), actors reused. For each, the seconds per trial over its second
half (from the trials' end times: the steady cost once the sweep is under way, which grows
where something costs more as the sweep's state grows) and over the whole sweep, and the
driver's peak memory. Goal: the cost per trial at 1,000 within 1.5x of that at 16; the
driver under 2 GiB.

    python benchmarks/orchestration.py [--reused 8 32] [--fresh 6 18] [--scale 16 256 1000]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import ray
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.engine.cluster import find_cluster  # noqa: E402
from sweeps.engine.driver import connect, run_sweep  # noqa: E402
from sweeps.planner import make_plan  # noqa: E402
from sweeps.presets import load_preset  # noqa: E402
from sweeps.runfolder.run import load_run  # noqa: E402

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
    plan = make_plan(load_preset(str(path)), overrides=[], samples=trials, concurrency=None, gpus=None,
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


def scaled(folder: str, trials: int, epochs: int) -> dict:
    path = Path(folder) / "trivial-epochs.yaml"
    path.write_text(yaml.safe_dump({**TRIVIAL, "train": {**TRIVIAL["train"], "epochs": epochs},
                                    "sweep": {**TRIVIAL["sweep"], "reduction_factor": 2}}))
    plan = make_plan(load_preset(str(path)), overrides=[], samples=trials, concurrency=None, gpus=None,
                          cpus=None, storage=folder, name=f"scale-{trials}", seed=0)
    start = time.perf_counter()
    run_sweep(plan, local=True)
    wall = time.perf_counter() - start
    history = load_run(plan.path).history
    ends = history.groupby("trial_id")["finished_at"].max().sort_values().to_numpy()
    half = len(ends) // 2
    return {"trials": trials, "wall_s": wall, "epochs": len(history),
            "second_half_s": (ends[-1] - ends[half - 1]) / (len(ends) - half) if half else float("nan"),
            "driver_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reused", type=int, nargs=2, default=[8, 32], help="two sweep sizes, actors reused")
    parser.add_argument("--fresh", type=int, nargs=2, default=[6, 18], help="two sweep sizes, a new actor per trial")
    parser.add_argument("--scale", type=int, nargs="+", default=[16, 256, 1000],
                        help="sweep sizes of multi-epoch trials, smallest first")
    parser.add_argument("--scale-epochs", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        scale = [scaled(folder, n, args.scale_epochs) for n in sorted(args.scale)]
    print(f"scale: trivially short trials of at most {args.scale_epochs} epochs (a checkpoint each, ASHA), "
          f"actors reused, 2 at a time; the driver's peak so far after each sweep")
    print(f"{'trials':>7}{'epochs':>8}{'sweep wall s':>14}{'s/trial, whole':>16}{'s/trial, 2nd half':>19}"
          f"{'driver peak MiB':>17}")
    for r in scale:
        print(f"{r['trials']:>7}{r['epochs']:>8}{r['wall_s']:>14.1f}{r['wall_s'] / r['trials']:>16.3f}"
              f"{r['second_half_s']:>19.3f}{r['driver_peak_mb']:>17.0f}")
    print(f"scale: s/trial over the second half at {scale[-1]['trials']} trials / at {scale[0]['trials']}: "
          f"{scale[-1]['second_half_s'] / scale[0]['second_half_s']:.2f} (goal <= 1.5); driver peak "
          f"{scale[-1]['driver_peak_mb']:.0f} MiB (goal < 2048)")
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
    in_16 = {reuse: per_trial + per_sweep / 16 for reuse, (per_trial, per_sweep) in fits.items()}
    print(f"ratio={in_16[False] / in_16[True]:.2f}")


if __name__ == "__main__":
    main()
