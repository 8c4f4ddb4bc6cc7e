"""Search settings tried on recorded results, in seconds and without training.

A sweep's outcome depends on its search settings (the sampler, TPE's random start count,
the constant liar, whether the preset's initial configuration runs first) and on chance, so one
sweep says little about a setting. Here a setting is judged on many seeds at once: Optuna's
real sampler proposes configurations, each is answered by the recorded learning curve of the
nearest configuration trained to the end once (a nearest-neighbour table, as Syne Tune's
simulator uses), and ASHA (`sweeps.sim.asha.asha`, Ray's bracket) stops trials epoch by epoch, a
new one starting as a slot frees, `concurrency` at a time; each trial that ends is told to the
sampler with its last value, as Ray Tune's OptunaSearch does.

What a sweep yields is its best trial among those trained to the end (the model a user
ships): its test accuracy and the epochs the sweep spent are what settings are compared on.
A recording of two objectives (the metric and a cost) is searched by a multi-objective study,
ASHA ranks both at its rungs (sweeps.stopping; `rank_all` off: the metric alone, as Ray's
ASHA), and the front the sweep ends with is scored by its hypervolume as well.

Recorded results come from `sweep run PRESET --no-early-stopping` (a run folder) or from
`benchmarks/tools/record_curves.py` (a JSON file of a few hundred random configurations). Imports
numpy and Optuna, not Ray.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sweeps.errors import RunFolderError
from sweeps.runfolder.run import load_run, plain
from sweeps.search import Setting, make_sampler, optuna_distributions
from sweeps.sim.asha import Curve, Hypervolume, asha, pareto_points, trial_point
from trainer.metrics import direction
from trainer.metrics import sign as metric_sign

CHOICE_MISMATCH = 1.0  # distance added per categorical that differs: more than any numeric gap (at most 1)


@dataclass
class Recorded:
    """One configuration trained to its last epoch."""
    params: dict[str, Any]
    values: list[float]  # the ranked metric after each epoch
    seconds: list[float]  # each epoch's duration
    test_acc: float  # of the last epoch's model (nan where not recorded)
    others: list[list[float]] = field(default_factory=list)  # each other objective after each epoch


@dataclass
class Recording:
    search: dict[str, dict[str, list]]  # the search space as presets write it: {key: {kind: args}}
    initial: dict[str, Any]  # the preset's initial configuration ({}: none)
    metric: str
    mode: str
    max_epochs: int
    grace_period: int
    reduction_factor: float
    concurrency: int
    configs: list[Recorded]
    source: str = ""
    objectives: dict[str, str] = field(default_factory=dict)  # two: name -> mode, the metric first; {}: one

    def curve(self, index: int) -> Curve:
        return Curve(self.configs[index].values, self.configs[index].seconds, self.configs[index].others)

    @property
    def modes(self) -> list[str]:
        return list(self.objectives.values())


class Nearest:
    """The recorded configuration nearest to a proposed one: numeric keys scaled to [0, 1] over
    the search range (log scale for loguniform), each differing categorical costing 1."""

    def __init__(self, recording: Recording):
        self.search = recording.search
        self.numeric = [k for k, spec in self.search.items() if "choice" not in spec]
        self.choices = [k for k, spec in self.search.items() if "choice" in spec]
        self.points = np.array([[self._scale(k, r.params[k]) for k in self.numeric] for r in recording.configs])
        self.labels = [tuple(r.params[k] for k in self.choices) for r in recording.configs]

    def _scale(self, key: str, value: float) -> float:
        kind, (low, high) = next(iter(self.search[key].items()))
        if kind == "loguniform":
            return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
        return (value - low) / (high - low) if high > low else 0.0

    def __call__(self, params: dict[str, Any]) -> int:
        point = np.array([self._scale(k, params[k]) for k in self.numeric])
        gaps = (np.sqrt(((self.points - point) ** 2).sum(axis=1)) if self.numeric
                else np.zeros(len(self.labels)))
        wanted = tuple(params[k] for k in self.choices)
        gaps = gaps + CHOICE_MISMATCH * np.array([sum(a != b for a, b in zip(lab, wanted)) for lab in self.labels])
        return int(np.argmin(gaps))


@dataclass
class SweepResult:
    test_acc: float  # the best finished trial's
    best_value: float  # its best value of the metric
    epochs: int  # trained in all
    trials: list[int] = field(default_factory=list)  # recorded configurations, in start order
    hypervolume: float = math.nan  # two objectives: of the front the sweep ends with


def simulate(recording: Recording, setting: Setting, trials: int, seed: int, concurrency: int | None = None,
             grace_period: int | None = None, reduction_factor: float | None = None,
             early_stopping: bool = True, nearest: Nearest | None = None,
             first: list[dict[str, Any]] | None = None, rank_all: bool = True,
             volume: Hypervolume | None = None) -> SweepResult:
    """One sweep of `trials` under `setting`, answered from `recording`. `first`: configurations
    that start before the sampler proposes any (after the initial configuration, where the setting
    runs it), as a warm start's best do. With two objectives, `rank_all` off ranks the metric
    alone at the rungs; `volume` scores the front (by default against the whole recording)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    nearest = nearest or Nearest(recording)
    distributions = optuna_distributions(recording.search)
    several = len(recording.objectives) > 1
    study = optuna.create_study(directions=[direction(m) for m in recording.modes] if several else
                                [direction(recording.mode)], sampler=make_sampler(setting, trials, seed))
    if setting.initial_first and recording.initial:
        study.enqueue_trial(recording.initial)
    for params in first or []:
        study.enqueue_trial(params)
    asked: list[Any] = []  # optuna trials, in start order
    chosen: list[int] = []

    def propose() -> Curve | None:
        if len(asked) == trials:
            return None
        trial = study.ask(distributions)
        asked.append(trial)
        chosen.append(nearest(trial.params))
        return recording.curve(chosen[-1])

    def finished(index: int, epochs: int) -> None:  # each objective's last report, as OptunaSearch tells it
        study.tell(asked[index], recording.curve(chosen[index]).point(epochs) if several else
                   recording.configs[chosen[index]].values[epochs - 1])

    max_t = recording.max_epochs
    grace = grace_period or recording.grace_period
    trained = asha(propose, concurrency or recording.concurrency, grace if early_stopping else max_t,
                   reduction_factor or recording.reduction_factor, max_t, recording.mode, finished,
                   objectives=recording.modes if several and rank_all else ())
    sign = metric_sign(recording.mode)
    done = [(max(sign * v for v in recording.configs[c].values), i) for i, c in enumerate(chosen)
            if trained[i] == max_t]
    _, best = max(done)
    config = recording.configs[chosen[best]]
    hypervolume = math.nan
    if len(recording.objectives) == 2:  # the hypervolume is a plane's
        volume = volume or Hypervolume([recording.curve(i) for i in range(len(recording.configs))], recording.modes)
        points = [trial_point(recording.curve(c), n, recording.mode) for c, n in zip(chosen, trained)]
        hypervolume = volume(pareto_points(points, recording.modes))
    return SweepResult(test_acc=config.test_acc, best_value=sign * max(sign * v for v in config.values),
                       epochs=sum(trained), trials=chosen, hypervolume=hypervolume)


@dataclass
class Summary:
    setting: str
    trials: int
    seeds: int
    median_test: float
    p10_test: float  # 10th percentile over seeds: a bad draw
    mean_test: float  # moves with every seed's result, where the median moves in steps of one configuration
    median_epochs: float
    se_test: float = math.nan  # standard error of mean_test: how far another set of seeds may move it
    median_hypervolume: float = math.nan  # two objectives: of the sweep's front
    p10_hypervolume: float = math.nan

    def row(self) -> list[str]:
        row = [self.setting, str(self.trials), str(self.seeds), f"{self.median_test:.4f}", f"{self.p10_test:.4f}",
               f"{self.mean_test:.4f}", f"{self.median_epochs:.0f}"]
        if not math.isnan(self.median_hypervolume):
            row += [f"{self.median_hypervolume:.4f}", f"{self.p10_hypervolume:.4f}"]
        return row


SEED_BASE = 1000  # away from the seeds a recording drew its random configurations with


def compare(recording: Recording, settings: list[Setting], budgets: list[int], seeds: int,
            **options: Any) -> list[Summary]:
    """Every setting at every budget over `seeds` seeds (the same seeds for each setting)."""
    nearest = Nearest(recording)
    volume = Hypervolume([recording.curve(i) for i in range(len(recording.configs))], recording.modes) \
        if len(recording.objectives) == 2 else None
    out = []
    for trials in budgets:
        for setting in settings:
            results = [simulate(recording, setting, trials, SEED_BASE + seed, nearest=nearest, volume=volume,
                                **options) for seed in range(seeds)]
            tests = np.array([r.test_acc for r in results], dtype=float)
            volumes = np.array([r.hypervolume for r in results], dtype=float)
            fronts = {"median_hypervolume": float(np.median(volumes)),
                      "p10_hypervolume": float(np.percentile(volumes, 10))} if volume else {}
            spread = float(np.nanstd(tests, ddof=1) / math.sqrt(np.count_nonzero(~np.isnan(tests)))) \
                if seeds > 1 else math.nan
            out.append(Summary(setting.name, trials, seeds, float(np.nanmedian(tests)),
                               float(np.nanpercentile(tests, 10)), float(np.nanmean(tests)),
                               float(np.median([r.epochs for r in results])), spread, **fronts))
    return out


def load_recording(path: str) -> Recording:
    """Curves from a JSON file of `benchmarks/tools/record_curves.py`, or from the run folder of a
    sweep that trained every trial to the end (`sweep run PRESET --no-early-stopping`)."""
    source = Path(path)
    if source.is_file():
        try:
            data = json.loads(source.read_text())
            meta = data["meta"]
            objectives = dict(meta.get("objectives") or {})
            others = [k for k in objectives if k != meta["metric"]]
            configs = [Recorded(c["params"], [float(v) for v in c["values"]], [float(s) for s in c["seconds"]],
                                math.nan if c.get("test_acc") is None else float(c["test_acc"]),
                                [[float(v) for v in c["objectives"][k]] for k in others])
                       for c in data["configs"] if len(c["values"]) == meta["max_epochs"]]
            recording = Recording(meta["search"], meta.get("initial") or {}, meta["metric"], meta["mode"],
                                  int(meta["max_epochs"]), int(meta["grace_period"]),
                                  float(meta["reduction_factor"]), int(meta.get("concurrency") or 2), configs,
                                  str(source), objectives)
        except (ValueError, KeyError, TypeError) as err:
            raise RunFolderError(f"{path}: not a curves file of benchmarks/tools/record_curves.py "
                                 f"({type(err).__name__}: {err}); pass such a file or a run folder") from None
    else:
        recording = _from_run(path)
    if len(recording.configs) < 2:
        raise RunFolderError(f"{path}: {len(recording.configs)} configuration(s) trained to the end; the simulation "
                        f"needs many (run `sweep run PRESET --no-early-stopping --samples 100` to record them)")
    return recording


def _from_run(path: str) -> Recording:
    run = load_run(path)
    plan = run.plan
    if plan.population:  # its members swapped weights and values as they trained: no curve is one configuration's
        raise RunFolderError(f"{path} is population-based training ({plan.scheduler}): its curves are lineages, "
                             f"not configurations; record with `sweep run PRESET --no-early-stopping` and scheduler "
                             f"asha")
    configs = []
    scored = run.scored
    for trial_id, rows in run.history.groupby("trial_id"):
        rows = rows.sort_values("epoch")
        if len(rows) != run.max_epochs:
            continue  # stopped early or unfinished: not a full curve
        trial = scored[scored["trial_id"] == trial_id]
        if trial.empty:
            continue
        params = {k: plain(trial.iloc[0][k]) for k in plan.search}
        others = [[float(v) for v in rows[k]] for k in plan.objectives if k != plan.metric]
        configs.append(Recorded(params, [float(v) for v in rows[plan.metric]],
                                [float(v) for v in rows["epoch_time_s"]], float(trial.iloc[0]["test_acc"]), others))
    return Recording(plan.search, dict(plan.initial), plan.metric, plan.mode, run.max_epochs, plan.grace_period,
                     float(plan.reduction_factor), plan.concurrency or 2, configs, path, dict(plan.objectives))

