"""ASHA's settings chosen from evidence: ASHA replayed over the recorded curves of trials that
all trained to the end, for many random draws and orders of them, for several (grace period,
reduction factor) pairs, in seconds and without training (sweeps/sim/asha.py).

For each pair it prints the share of FIFO's epochs ASHA trains (median, 10th and 90th
percentiles) and how often the best value ASHA saw is within 0.5 points of FIFO's best on
the same draw. Real ASHA sweeps of the same preset (`--real RUN ...`) are checked against
the replayed range of their pair. The curves come from a run folder of
`sweep run PRESET --no-early-stopping` (`--run`), or from a JSON file that `--save` wrote
(the quickstart's 48 trials ship as benchmarks/data/quickstart_fifo48.json). Ends with
`ratio=<FIFO epochs / the median epochs of the preset's pair>`.

    python benchmarks/asha_replay.py [--curves FILE | --run RUN] [--orders 500] [--real RUN ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.sim.asha import Curve, many_orders  # noqa: E402

HERE = Path(__file__).resolve().parent
PAIRS = [(1, 2), (1, 3), (1, 4), (1, 8), (2, 2), (2, 3), (2, 4), (3, 2)]


def curves_of_run(run_path: str, metric: str) -> tuple[list[Curve], dict]:
    from sweeps.presets import load_preset
    from sweeps.runfolder.run import load_run

    run = load_run(run_path)
    max_epochs = run.max_epochs
    preset = load_preset(run.plan.preset_path)
    curves = []
    for _, rows in run.history.groupby("trial_id"):
        rows = rows.sort_values("epoch")
        if len(rows) == max_epochs:  # trained to the end
            curves.append(Curve([float(v) for v in rows[metric]], [float(v) for v in rows["epoch_time_s"]]))
    meta = {"preset": run.plan.preset, "metric": metric, "mode": run.mode, "max_epochs": max_epochs,
            "trials": preset.trials, "grace_period": preset.grace_period,
            "reduction_factor": preset.reduction_factor}  # the preset's own sweep, not the recording's
    return curves, meta


def real_shares(run_paths: list[str]) -> list[tuple[str, float, int, float]]:
    """(run, share of FIFO's epochs, grace period, reduction factor) of real ASHA sweeps."""
    from sweeps.runfolder.run import load_run

    shares = []
    for path in run_paths:
        run = load_run(path)
        shares.append((path, float(run.trials["epochs_trained"].sum()) / (len(run.trials) * run.max_epochs),
                       run.plan.grace_period, float(run.plan.reduction_factor)))
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curves", type=Path, default=HERE / "data" / "quickstart_fifo48.json")
    parser.add_argument("--run", help="a run folder of `sweep run PRESET --no-early-stopping`")
    parser.add_argument("--save", type=Path, help="write the run's curves to this JSON file")
    parser.add_argument("--trials", type=int, help="trials per replayed sweep (default: the preset's)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--metric", default="val_acc")
    parser.add_argument("--real", nargs="*", default=[], help="run folders of real ASHA sweeps to check")
    args = parser.parse_args()
    if args.run:
        curves, meta = curves_of_run(args.run, args.metric)
        if args.save:
            args.save.parent.mkdir(parents=True, exist_ok=True)
            args.save.write_text(json.dumps({"meta": meta, "curves": [[c.values, c.seconds] for c in curves]}))
    else:
        data = json.loads(args.curves.read_text())
        meta, curves = data["meta"], [Curve(values, seconds) for values, seconds in data["curves"]]
        from sweeps.presets import load_preset

        preset = load_preset(meta["preset"])  # its settings now, not when the curves were recorded
        meta.update(trials=preset.trials, grace_period=preset.grace_period, reduction_factor=preset.reduction_factor)
    trials = args.trials or meta["trials"]
    points = 0.005 if "acc" in meta["metric"] else 0.0  # 0.5 points of an accuracy; a loss: equal
    print(f"{meta['preset']}: {len(curves)} recorded curves of {meta['max_epochs']} epochs ({meta['metric']}); "
          f"{args.orders} random draws of {trials} trials, {args.concurrency} at a time")
    print(f"{'grace':>6}{'rf':>4}{'rungs':>15}{'median share':>14}{'p10':>7}{'p90':>7}{'best within 0.5 pt':>20}"
          f"{'trials stopped':>16}")
    results = {}
    from sweeps.sim.asha import rungs

    for grace, rf in PAIRS:
        if grace > meta["max_epochs"]:
            continue
        outcomes = many_orders(curves, trials, args.concurrency, grace, rf, args.orders, seed=0, mode=meta["mode"])
        shares = np.array([o.share for o in outcomes])
        sign = 1 if meta["mode"] == "max" else -1
        close = np.mean([sign * (o.fifo_best - o.best) <= points + 1e-12 for o in outcomes])
        results[(grace, rf)] = (shares, close)
        print(f"{grace:>6}{rf:>4g}{str(rungs(grace, rf, meta['max_epochs'])):>15}{np.median(shares):>14.0%}"
              f"{np.percentile(shares, 10):>7.0%}{np.percentile(shares, 90):>7.0%}{close:>20.0%}"
              f"{np.median([o.stopped for o in outcomes]):>16g}")
    for path, share, grace, rf in real_shares(args.real):
        replayed = results.get((grace, float(rf))) or results.get((grace, int(rf)))
        where = "no replayed pair"
        if replayed is not None:
            low, high = np.percentile(replayed[0], [10, 90])
            inside = low <= share <= high
            where = f"replayed p10-p90 {low:.0%}-{high:.0%}: {'inside' if inside else 'OUTSIDE'}; " \
                    f"min-max {replayed[0].min():.0%}-{replayed[0].max():.0%}"
        print(f"real ASHA sweep (grace {grace}, rf {rf:g}) {Path(path).name}: {share:.0%} of FIFO's epochs; {where}")
    current = results.get((meta["grace_period"], meta["reduction_factor"])) or next(iter(results.values()))
    print(f"ratio={1 / np.median(current[0]):.2f}")


if __name__ == "__main__":
    main()
