"""How a sweep searches: its parameters and their Optuna distributions, the named search
settings (the ones `sweep simulate` compares) and the Optuna sampler each one builds. The
plan chooses a setting; the driver and the simulator build their samplers here. Imports
Optuna only inside functions."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")

@dataclass
class Param:
    kind: str  # one of DISTRIBUTIONS
    args: list[Any]  # [low, high] or the choices

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.args
        low, high = self.args
        return isinstance(value, (int, float)) and low <= value <= high

    def describe(self) -> str:
        if self.kind == "choice":
            return "choice(" + ", ".join(map(str, self.args)) + ")"
        return f"{self.kind}({self.args[0]:g}, {self.args[1]:g})"

def optuna_distributions(search: dict[str, dict[str, list]]) -> dict[str, Any]:
    """The search space ({key: {kind: args}}, as presets and resweep.json write it) as Optuna
    distributions: the one definition the searcher, the exported study and the report share."""
    import optuna

    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for key, spec in search.items():
        kind, args = next(iter(spec.items()))
        if kind == "choice":
            out[key] = optuna.distributions.CategoricalDistribution(args)
        elif kind == "int":
            out[key] = optuna.distributions.IntDistribution(int(args[0]), int(args[1]))
        else:
            out[key] = optuna.distributions.FloatDistribution(float(args[0]), float(args[1]),
                                                              log=kind == "loguniform")
    return out


@dataclass(frozen=True)
class Setting:
    """How a sweep searches."""
    name: str
    sampler: str = "tpe"  # tpe | gp | random | qmc | nsga2 (several objectives only)
    startup: int = 0  # TPE's or GP's random trials before it models (0: a share of the trials, below)
    startup_share: float = 0.25  # that share of the trials, at least 2 ...
    startup_cap: int = 10  # ... and at most this many (0: no cap)
    constant_liar: bool = True  # TPE: running trials count as bad, so concurrent trials spread out
    initial_first: bool = True  # the preset's initial configuration (its source project's own) is the first trial
    above: tuple[int, str] | None = None  # (trials, setting): from this many trials on, that setting instead

    def at(self, trials: int) -> Setting:
        """The setting a sweep of `trials` searches with: this one, or the one `above` names."""
        return SETTINGS[self.above[1]] if self.above and trials >= self.above[0] else self

    @property
    def label(self) -> str:
        return {"tpe": "Optuna TPE", "gp": "Optuna Gaussian process", "random": "random search",
                "qmc": "Optuna quasi-random Sobol points", "nsga2": "Optuna NSGA-II"}[self.sampler]

    def startup_trials(self, trials: int) -> int:
        """The random trials before the model: `startup`, else the share of `trials` (a quarter,
        2 to 10, in `tpe-quarter`)."""
        if self.startup:
            return self.startup
        share = max(2, int(trials * self.startup_share))
        return min(self.startup_cap, share) if self.startup_cap else share

# resweep's default, decided by `benchmarks/search_settings.py` on five recordings at 8 to 50
# trials, 200 seeds each (BENCHMARKS.md, "Search settings"): per budget, the setting of the best
# mean over the recordings that is nowhere worse than random search (by more than two standard
# errors). Scrambled Sobol points after the initial configuration below DEFAULT_TPE_FROM trials
# (chosen at 8 and 20); from there on (chosen at 30, 40 and 50), TPE after a random half, which
# by then has the data to find a good region that evenly spread points only sample. The sweep
# and the simulator both build their sampler from this (make_sampler, through `at`).
DEFAULT_TPE_FROM = 30
RESWEEP = Setting("resweep", sampler="qmc", above=(DEFAULT_TPE_FROM, "tpe-half"))

SETTINGS = {
    "resweep": RESWEEP,
    "tpe-defaults": Setting("tpe-defaults", startup=10, constant_liar=False, initial_first=False),
    # resweep's default until 2026-11-24, and still its sampler for warm starts and several objectives
    "tpe-quarter": Setting("tpe-quarter"),
    "tpe-no-liar": Setting("tpe-no-liar", constant_liar=False),
    "tpe-no-initial": Setting("tpe-no-initial", initial_first=False),
    "tpe-startup-2": Setting("tpe-startup-2", startup=2),
    "tpe-startup-10": Setting("tpe-startup-10", startup=10),
    "tpe-half": Setting("tpe-half", startup_share=0.5, startup_cap=0),  # a random half, then TPE
    "gp": Setting("gp", sampler="gp"),  # Optuna's Gaussian process after a random quarter
    "random": Setting("random", sampler="random", initial_first=False),
    "random-initial": Setting("random-initial", sampler="random"),
    "qmc": Setting("qmc", sampler="qmc", initial_first=False),
    # the default below DEFAULT_TPE_FROM trials (and at every budget until 2026-12-04)
    "qmc-initial": Setting("qmc-initial", sampler="qmc"),
}

# what `sweep simulate` compares unless told: a Gaussian process takes about a second per trial to
# propose (a fit and a search of its acquisition), about 25 s per simulated sweep of 50 trials
QUICK = [name for name, setting in SETTINGS.items() if setting.sampler != "gp"]

NSGA2 = Setting("nsga2", sampler="nsga2")  # the other multi-objective sampler (benchmarks/multi_objective.py)
# Settings older plans name by their sampler alone (resweep.json's `sampler`, before 2026-12-02)
OLD_SAMPLERS = {"tpe": "tpe-quarter", "random": "random-initial"}
# Settings renamed since plans named them (resweep.json's `setting`, 2026-12-02): "seed" meant the RNG's
OLD_SETTINGS = {"tpe-no-seed": "tpe-no-initial", "random-seed": "random-initial"}


def setting_named(name: str) -> Setting:
    """The setting called `name`: one `sweep simulate` prints, or nsga2 (several objectives)."""
    return {**SETTINGS, NSGA2.name: NSGA2}[name]

def default_setting(trials: int) -> Setting:
    """The setting a sweep of `trials` searches with by default (RESWEEP at that budget)."""
    return RESWEEP.at(trials)

def make_sampler(setting: Setting, trials: int, seed: int):
    """The Optuna sampler of `setting` for a sweep of `trials`."""
    import optuna

    setting = setting.at(trials)
    if setting.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if setting.sampler == "nsga2":
        from sweeps.nsga2 import PicklableNSGAII

        return PicklableNSGAII(seed=seed, population_size=max(4, min(50, trials // 3)))
    if setting.sampler == "qmc":
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed,
                                          warn_independent_sampling=False, warn_asynchronous_seeding=False)
    startup = setting.startup_trials(trials)
    if setting.sampler == "gp":
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=setting.constant_liar)
