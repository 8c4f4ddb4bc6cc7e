"""Which multi-objective sampler: Optuna's TPE (multi-objective by itself, MOTPE) against NSGA-II,
in real sweeps of the quickstart with the ResNet9's width searched too, objectives validation
accuracy (max) and parameters (min; deterministic, where latency on a shared CPU is noise), with
ASHA as resweep runs them. Each seed runs both; the front's quality is its hypervolume (the area
of the (log10 parameters, accuracy) plane it dominates, up to a reference point past the largest
model and at accuracy 0). Ends with `ratio=` median hypervolume TPE / NSGA-II.

    python benchmarks/multi_objective.py [--seeds 3] [--samples 12]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.stats import pareto_front  # noqa: E402
from sweeps.engine.driver import run_sweep  # noqa: E402
from sweeps.planner import make_plan  # noqa: E402
from sweeps.presets import load_preset  # noqa: E402
from sweeps.runfolder.run import load_run  # noqa: E402
from sweeps.search import Param  # noqa: E402

OBJECTIVES = {"val_acc": "max", "params": "min"}
WIDTHS = [4, 8, 16, 32]


def hypervolume(front: list[tuple[float, float]], cost_ref: float) -> float:
    """Area dominated by `front` [(cost, value)], low cost and high value better, above value 0
    and left of `cost_ref`."""
    area, best = 0.0, 0.0
    for cost, value in sorted(front):
        if value > best:
            area += (cost_ref - cost) * (value - best)
            best = value
    return area


def sweep(storage: str, sampler: str, seed: int, samples: int, epochs: int) -> dict:
    quickstart = load_preset("quickstart")  # and the width searched too, ranked on both objectives
    preset = replace(quickstart, search={**quickstart.search, "width": Param("choice", WIDTHS)},
                     initial={**quickstart.initial, "width": 16}, objectives=dict(OBJECTIVES))
    plan = make_plan(preset, overrides=["device=cpu"], samples=samples, concurrency=None, gpus=None, cpus=None,
                     storage=storage, name=f"{sampler}-{seed}", seed=seed, epochs=epochs,
                     setting={"tpe": "tpe-quarter"}.get(sampler, sampler))
    start = time.perf_counter()
    run_sweep(plan, local=True)
    wall = time.perf_counter() - start
    trials = load_run(plan.path).scored.dropna(subset=list(OBJECTIVES))
    front = pareto_front(trials, OBJECTIVES)
    largest = max(trials["params"].max(), 1.0)
    points = [(math.log10(p), v) for p, v in zip(front["params"], front["val_acc"])]
    return {"sampler": sampler, "seed": seed, "wall_s": wall, "front": len(front), "trials": len(trials),
            "hypervolume": hypervolume(points, math.log10(largest) + 0.1),
            "best_val": float(trials["val_acc"].max()), "epochs": int(trials["epochs_trained"].sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as storage:
        for seed in range(args.seeds):
            for sampler in ("tpe", "nsga2"):  # interleaved: both samplers see the same stretch of the machine
                results.append(sweep(storage, sampler, seed, args.samples, args.epochs))
    print(f"quickstart + width {WIDTHS}, {args.samples} trials of at most {args.epochs} epochs, objectives "
          f"{OBJECTIVES}")
    print(f"{'sampler':<8}{'seed':>5}{'front':>7}{'hypervolume':>13}{'best val':>10}{'epochs':>8}{'wall s':>8}")
    for r in results:
        print(f"{r['sampler']:<8}{r['seed']:>5}{r['front']:>7}{r['hypervolume']:>13.4f}{r['best_val']:>10.4f}"
              f"{r['epochs']:>8}{r['wall_s']:>8.0f}")
    medians = {s: statistics.median(r["hypervolume"] for r in results if r["sampler"] == s) for s in ("tpe", "nsga2")}
    print(f"median hypervolume: TPE {medians['tpe']:.4f}, NSGA-II {medians['nsga2']:.4f}")
    print(f"ratio={medians['tpe'] / max(medians['nsga2'], 1e-12):.2f}")


if __name__ == "__main__":
    main()
