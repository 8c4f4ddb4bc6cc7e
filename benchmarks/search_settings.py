"""Search settings chosen from evidence: every setting of `sweeps/search.py` (resweep's
default; Optuna's TPE defaults; TPE after a random quarter of the trials, resweep's default
before, and its variants without the constant liar, without the initial configuration, with 2
or 10 random start trials or a random half; Optuna's Gaussian process; random search with and
without the initial configuration; Sobol points without it) simulated with ASHA on recorded full
learning curves, at 8, 20 and 50 trials, over many seeds each, without training.

The curves: every `benchmarks/data/*_curves.json` of one objective, each recorded by
`benchmarks/tools/record_curves.py` (the command in BENCHMARKS.md, "Search settings").

For each recording and budget it prints every setting's median, 10th percentile and mean
(over seeds) of the test accuracy of the sweep's best trial and the median epochs spent, and
names the best setting (highest mean, then highest 10th percentile, then fewest epochs).
With three recordings or more it then chooses by leaving one out: per budget, the setting of
the highest mean over all recordings but one, scored on the one left out beside random search,
Optuna's TPE defaults and resweep's default; and the setting that is never worse than random
search on any recording with the highest mean over all of them (the rule the default follows).
Ends with `ratio=<resweep's mean test accuracy / Optuna's TPE defaults', averaged over the
recordings and budgets>`. The same figures for any one recording: `sweep simulate RUN_OR_FILE`.

    python benchmarks/search_settings.py [--seeds 30] [--trials 8 20 50] [--curves FILE ...]
        [--settings NAME ...]   # every setting but gp unless named: gp proposes a trial a second
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from sweeps.search import QUICK, SETTINGS  # noqa: E402
from sweeps.sim.simulate import compare, load_recording  # noqa: E402

CURVES = sorted(p for p in (HERE / "data").glob("*_curves.json") if "pareto" not in p.name)
BASELINES = ("random", "tpe-defaults", "resweep")  # what a left-out recording's choice is scored beside
NOISE_Z = 2.0  # a mean this many standard errors of the difference below random search's is worse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curves", nargs="+", default=[str(p) for p in CURVES])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--trials", type=int, nargs="+", default=[8, 20, 50])
    parser.add_argument("--settings", nargs="+", default=QUICK, help="default: every setting but gp (slow)")
    parser.add_argument("--json", default=None, help="also write every figure here (recording -> rows)")
    args = parser.parse_args()

    ratios = []
    figures: dict[str, list[dict]] = {}  # recording -> one row per setting and budget (--json)
    means: dict[str, dict[tuple[str, int], tuple[float, float]]] = {}  # recording -> (setting, trials) -> mean, se
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
        name = Path(path).name.removesuffix("_curves.json")
        means[name] = {(s.setting, s.trials): (s.mean_test, s.se_test) for s in summaries}
        figures[name] = [{k: v for k, v in dataclasses.asdict(s).items() if v == v} for s in summaries]  # no NaN
    if len(means) >= 3:
        leave_one_out(means, args.settings, args.trials)
    if args.json:
        Path(args.json).write_text(json.dumps({"seeds": args.seeds, "recordings": figures}, indent=1))
    print(f"ratio={sum(ratios) / len(ratios):.4f}" if ratios else "ratio=nan")


def leave_one_out(means: dict[str, dict[tuple[str, int], tuple[float, float]]], settings: list[str],
                  budgets: list[int]) -> None:
    """Per budget: the setting chosen on all recordings but one, scored on the one left out; and
    the setting never worse than random search on any recording, of the highest mean over all.
    `means`: recording -> (setting, trials) -> (mean test accuracy, its standard error). "Worse"
    is worse by more than NOISE_Z standard errors of the difference: on a problem where few
    configurations learn, 100 seeds leave a mean a point or two from where 1,000 would put it."""
    def average(setting: str, trials: int, recordings: list[str]) -> float:
        return sum(means[r][setting, trials][0] for r in recordings) / len(recordings)

    def margin(setting: str, trials: int, recording: str) -> tuple[float, float]:
        (mean, se), (base, base_se) = means[recording][setting, trials], means[recording]["random", trials]
        return mean - base, (mean - base) / max(1e-9, (se ** 2 + base_se ** 2) ** 0.5)

    names = list(means)
    shown = [b for b in BASELINES if b in settings]
    print(f"\nleave one out: the setting of the highest mean over the other {len(names) - 1} recordings, "
          f"its mean on the one left out, and {', '.join(shown)}'s there")
    print(f"{'left out':>12} {'trials':>6} {'chosen':>15} {'its mean':>8} " + " ".join(f"{b:>12}" for b in shown))
    for trials in budgets:
        for left in names:
            others = [r for r in names if r != left]
            chosen = max(settings, key=lambda s: average(s, trials, others))
            print(f"{left:>12} {trials:>6} {chosen:>15} {means[left][chosen, trials][0]:>8.4f} "
                  + " ".join(f"{means[left][b, trials][0]:>12.4f}" for b in shown))
    if "random" not in settings:
        return
    print(f"\nover every recording: mean, and the least margin over random search on any one (in points), "
          f"and the least in standard errors of the difference (below -{NOISE_Z:g}: worse)")
    for trials in budgets:
        rows = sorted(((average(s, trials, names), (min(margin(s, trials, r)[0] for r in names),
                                                    min(margin(s, trials, r)[1] for r in names)), s)
                       for s in settings), key=lambda row: row[0], reverse=True)
        for mean, (least, z), name in rows:
            print(f"{name:>15} {trials:>6} {mean:>9.4f} {100 * least:>+7.2f} {z:>+6.1f}")
        fit = [row for row in rows if row[1][1] >= -NOISE_Z]
        print(f"{'rule':>15} {trials:>6}: {fit[0][2] if fit else 'none'} (never worse than random search, best mean)")


if __name__ == "__main__":
    main()
