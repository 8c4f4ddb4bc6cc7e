"""Search settings chosen from evidence: every setting of `sweeps/sim/simulate.py` (resweep's
default, quasi-random Sobol points after the initial configuration; Optuna's TPE defaults; TPE
after a random quarter of the trials, resweep's default before, and its variants without the
constant liar, without the initial configuration, with 2 or 10 random start trials; random search
with and without the initial configuration; Sobol points without it) simulated with ASHA on
recorded full learning curves, at 8, 20 and 50 trials, over many seeds each, in minutes and
without training.

The curves: `benchmarks/data/quickstart_curves.json` (300 random configurations of the
quickstart, digits) and `benchmarks/data/animal_curves.json` (200 of a ResNet9 on an image
folder of Animal-MNIST), both recorded by `benchmarks/tools/record_curves.py`.

For each recording and budget it prints every setting's median, 10th percentile and mean
(over seeds) of the test accuracy of the sweep's best trial and the median epochs spent, and
names the best setting (highest mean, then highest 10th percentile, then fewest epochs: the
median moves in steps of one recorded configuration, so it ties often). Ends with
`ratio=<resweep's mean test accuracy / Optuna's TPE defaults', averaged over the recordings
and budgets>`. The same figures for any recording: `sweep simulate RUN_OR_FILE`.

    python benchmarks/search_settings.py [--seeds 30] [--trials 8 20 50] [--curves FILE ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from sweeps.search import SETTINGS  # noqa: E402
from sweeps.sim.simulate import compare, load_recording  # noqa: E402

CURVES = [HERE / "data" / "quickstart_curves.json", HERE / "data" / "animal_curves.json"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curves", nargs="+", default=[str(p) for p in CURVES])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--trials", type=int, nargs="+", default=[8, 20, 50])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    args = parser.parse_args()

    ratios = []
    for path in args.curves:
        recording = load_recording(path)
        started = time.perf_counter()
        summaries = compare(recording, [SETTINGS[name] for name in args.settings], args.trials, args.seeds)
        print(f"\n{Path(path).name}: {len(recording.configs)} configurations of {recording.max_epochs} epochs; "
              f"ASHA grace {recording.grace_period}, rf {recording.reduction_factor:g}, "
              f"{recording.concurrency} at a time; {args.seeds} seeds; simulated in "
              f"{time.perf_counter() - started:.0f}s")
        print(f"{'setting':>15} {'trials':>6} {'median test':>11} {'p10 test':>8} {'mean test':>9} "
              f"{'median epochs':>13}")
        for trials in args.trials:
            rows = [s for s in summaries if s.trials == trials]
            for s in rows:
                print(f"{s.setting:>15} {s.trials:>6} {s.median_test:>11.4f} {s.p10_test:>8.4f} {s.mean_test:>9.4f} "
                      f"{s.median_epochs:>13.0f}")
            best = max(rows, key=lambda s: (round(s.mean_test, 4), round(s.p10_test, 4), -s.median_epochs))
            print(f"{'best':>15} {trials:>6}: {best.setting}")
            by_name = {s.setting: s for s in rows}
            if "resweep" in by_name and "tpe-defaults" in by_name:
                ratios.append(by_name["resweep"].mean_test / by_name["tpe-defaults"].mean_test)
    print(f"ratio={sum(ratios) / len(ratios):.4f}" if ratios else "ratio=nan")


if __name__ == "__main__":
    main()
