"""Early stopping for two-objective sweeps, chosen from evidence: FIFO (every trial to the end),
ASHA on the first objective and multi-objective ASHA (sweeps/stopping.py) replayed over the
recorded full curves of a two-objective search space, many random draws of the same trial count
each, in seconds and without training (the replay runs the rung code a real sweep runs).

A sweep's outcome is its Pareto front: each trial at its best value of the metric over the epochs
it trained and its cost. Its quality is the hypervolume (the area of the (cost, metric) plane the
front dominates, up to a reference point just past the recording's worst cost and at the metric's
worst; the cost on a log10 scale where it spans more than 20x, as parameters do). For each rule
and (grace period, reduction factor) pair: the hypervolume as a share of FIFO's on the same draw
(median and 10th percentile), how often it is within 2% of FIFO's, and the share of FIFO's epochs
it trains. Real sweeps (`--real RUN ...`) are set beside the replayed range of their rule: their
share of the epochs and their front's hypervolume.

    python benchmarks/pareto_asha.py [--curves FILE ...] [--draws 500] [--trials 16] [--real RUN ...]

The curves come from `benchmarks/tools/record_curves.py` on a preset of two objectives; two
recordings of the quickstart-pareto preset ship in benchmarks/data/ (the digits, and an
Animal-MNIST image folder: quickstart_pareto_curves.json, animal_pareto_curves.json). Ends with
`ratio=<multi-objective ASHA's median hypervolume share of FIFO's, first recording, its preset's pair>`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.sim.asha import Curve, Hypervolume, replay  # noqa: E402

HERE = Path(__file__).resolve().parent
PAIRS = [(1, 2), (1, 3), (1, 4), (2, 3)]
RULES = ("first-objective", "all-objectives")
RECORDINGS = ["quickstart_pareto_curves.json", "animal_pareto_curves.json"]  # benchmarks/data/


def load_curves(path: Path) -> tuple[list[Curve], dict]:
    data = json.loads(path.read_text())
    meta = data["meta"]
    objectives = meta.get("objectives") or {}
    if len(objectives) != 2:
        raise SystemExit(f"{path}: a recording of two objectives is needed (record_curves.py on a preset with "
                         f"sweep.objectives); this one has {len(objectives) or 'one'}")
    cost = list(objectives)[1]
    curves = [Curve(c["values"], c["seconds"], others=[c["objectives"][cost]]) for c in data["configs"]
              if len(c["values"]) == meta["max_epochs"] and all(map(math.isfinite, c["values"]))]
    return curves, meta


def draws(curves: list[Curve], trials: int, count: int, seed: int) -> list[list[Curve]]:
    rng = np.random.default_rng(seed)
    return [[curves[i] for i in rng.choice(len(curves), size=min(trials, len(curves)), replace=False)]
            for _ in range(count)]


def real_sweeps(paths: list[str], volume: Hypervolume) -> list[dict]:
    from analysis.stats import pareto_front
    from sweeps.runfolder.run import load_run

    out = []
    for path in paths:
        run = load_run(path)
        objectives = run.plan.objectives
        scored = run.scored.dropna(subset=list(objectives))
        front = pareto_front(scored, objectives)
        cost = list(objectives)[1]
        out.append({"run": path, "rule": "all-objectives" if run.plan.pareto_stopping else "first-objective",
                    "pair": (run.plan.grace_period, run.plan.reduction_factor),
                    "share": float(run.trials["epochs_trained"].sum()) / (len(run.trials) * run.max_epochs),
                    "hypervolume": volume([[v, c] for v, c in zip(front[run.metric], front[cost])]),
                    "trials": len(run.trials)})
    return out


def compare(path: Path, args: argparse.Namespace, real: list[str]) -> float:
    """Print the table of one recording (and the real sweeps set beside it); returns multi-objective
    ASHA's median hypervolume share of FIFO's at the recording's own pair."""
    curves, meta = load_curves(path)
    modes = list(meta["objectives"].values())
    trials = args.trials or int(meta.get("trials") or 16)
    volume = Hypervolume(curves, modes)
    sweeps = draws(curves, trials, args.draws, args.seed)
    print(f"{path.name} ({meta['preset']} {' '.join(meta.get('overrides') or [])}): {len(curves)} recorded curves "
          f"of {meta['max_epochs']} epochs, objectives {meta['objectives']}; {args.draws} draws of {trials} trials, "
          f"{args.concurrency} at a time")
    fifo = [volume(replay(s, args.concurrency, 1, 2, modes[0], modes).fifo_front) for s in sweeps]
    print(f"FIFO: median hypervolume {np.median(fifo):.4f} (reference {volume.ref[0]:.3g} metric, "
          f"{'log10 ' if volume.log else ''}cost {volume.ref[1] * volume.signs[1]:.3g})")
    print(f"{'rule':<16}{'pair':>8}{'HV/FIFO med':>13}{'p10':>7}{'within 2%':>11}{'epochs med':>12}{'p10-p90':>12}")
    rows: dict[tuple, dict] = {}
    for grace, rf in PAIRS:
        if grace >= meta["max_epochs"]:
            continue
        for rule in RULES:
            shares, ratios, volumes = [], [], []
            for sweep, full in zip(sweeps, fifo):
                out = replay(sweep, args.concurrency, grace, rf, modes[0], modes, rank_all=rule == "all-objectives")
                volumes.append(volume(out.front))
                ratios.append(volumes[-1] / full if full > 0 else math.nan)
                shares.append(out.share)
            r = {"median": float(np.nanmedian(ratios)), "p10": float(np.nanpercentile(ratios, 10)),
                 "within": float(np.mean(np.array(ratios) >= 0.98)), "share": float(np.median(shares)),
                 "share_p10": float(np.percentile(shares, 10)), "share_p90": float(np.percentile(shares, 90)),
                 "shares": shares, "volumes": volumes}
            rows[(rule, grace, rf)] = r
            pair, spread = f"{grace},{rf:g}", f"{r['share_p10']:.0%}-{r['share_p90']:.0%}"
            print(f"{rule:<16}{pair:>8}{r['median']:>13.4f}{r['p10']:>7.3f}{r['within']:>11.0%}"
                  f"{r['share']:>12.0%}{spread:>12}")
    for sweep in real_sweeps(real, volume):
        grace, rf = sweep["pair"]
        replayed = rows.get((sweep["rule"], grace, rf))
        where = (f"replays: {np.percentile(replayed['shares'], 10):.0%}-{np.percentile(replayed['shares'], 90):.0%} "
                 f"of the epochs, hypervolume {np.percentile(replayed['volumes'], 10):.3f}-"
                 f"{np.percentile(replayed['volumes'], 90):.3f} (10th-90th percentile)") if replayed else \
            "no replay of its pair"
        print(f"real {sweep['run']}: {sweep['rule']} at ({grace},{rf:g}), {sweep['trials']} trials: "
              f"{sweep['share']:.0%} of FIFO's epochs, front hypervolume {sweep['hypervolume']:.3f}; {where}")
    pair = (int(meta["grace_period"]), float(meta["reduction_factor"]))
    chosen = rows.get(("all-objectives", *pair)) or rows[("all-objectives", *PAIRS[0])]
    print()
    return chosen["median"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curves", type=Path, nargs="+", default=[HERE / "data" / name for name in RECORDINGS])
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--trials", type=int, help="trials per replayed sweep (default: the preset's)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", nargs="*", default=[], help="run folders of real sweeps of the first recording's "
                                                               "preset, set beside its replays")
    args = parser.parse_args()
    shares = [compare(path, args, args.real if i == 0 else []) for i, path in enumerate(args.curves)]
    print(f"ratio={shares[0]:.3f}")


if __name__ == "__main__":
    main()
