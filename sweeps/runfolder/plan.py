"""A sweep's plan: the preset with the command line's changes applied, where it runs and
what it may cost. Saved as `resweep.json` in the run folder so that `sweep resume`,
`sweep status` and `analysis` know what the run was."""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sweeps.errors import RunFolderError, SweepError
from sweeps.prices import usd
from sweeps.runfolder.claim import Claim, Holder
from sweeps.runfolder.layout import (
    OPTUNA_DB,
    PLAN_FILE,
    STATE_ARCHIVE,
    STATE_FILE,
    claim_file,
    is_trial_folder,
    plan_file,
)
from sweeps.runfolder.storage import (
    absolute,
    check_timeout_s,
    exists,
    is_uri,
    join,
    list_folder,
    read_text_or_none,
    split_name,
    with_time_limit,
    write_text,
)
from sweeps.search import OLD_SAMPLERS, OLD_SETTINGS, SETTINGS, Param, Setting, default_setting, setting_named
from sweeps.stopping import ALL_OBJECTIVES, FIRST_OBJECTIVE
from trainer.config import TrainConfig, from_dict


@dataclass(frozen=True)
class EarlierTrial:
    """A trial of an earlier sweep that seeds this one's search (`--warm-start`)."""
    trial_id: str
    params: dict[str, Any]  # its configuration, in this sweep's space
    value: float  # its best value of the metric
    pruned: bool  # stopped early or unfinished: told to Optuna as pruned
    intermediate: list[float]  # its metric after each epoch


@dataclass(frozen=True)
class WarmStart:
    """What `--warm-start` took from an earlier sweep (sweeps.warmstart builds it)."""
    source: str  # the earlier run folder
    preset: str
    dataset: str
    trials: list[EarlierTrial]  # every earlier trial that fits this sweep's space
    first: list[str]  # the earlier trials whose configurations train first, in that order
    skipped: dict[str, int]  # why the other trials were left out -> how many

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WarmStart:
        return cls(source=data["source"], preset=data.get("preset", ""), dataset=data.get("dataset", ""),
                   trials=[EarlierTrial(**t) for t in data.get("trials", [])], first=list(data.get("first", [])),
                   skipped=dict(data.get("skipped") or {}))


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep was asked to do, frozen once `sweeps.planner.make_plan` has built it."""


    preset: str
    preset_path: str
    description: str
    train: dict[str, Any]  # the fixed training config, every key, overrides applied
    search: dict[str, dict[str, list]]  # key -> {distribution: args}
    initial: dict[str, Any]
    trials: int
    concurrency: int  # 0: as many as the resources allow
    gpu: float
    cpu: float
    grace_period: int
    reduction_factor: float
    metric: str
    mode: str
    seed: int
    storage: str  # absolute folder or URI
    name: str
    overrides: list[str]  # the --set items, as given
    created: float = 0.0
    # how it searches: a setting of sweeps.search by name (as `sweep simulate` prints them), or
    # "default" (see search_setting below); the baselines of benchmarks/ name theirs
    setting: str = "default"
    early_stopping: bool = True  # ASHA; False: every trial trains all its epochs (FIFO)
    mlflow: str = ""  # MLflow tracking URI the trials are logged to; "": none
    wandb: str = ""  # Weights & Biases project the trials are logged to; "": none
    # what --warm-start took from an earlier sweep; None: started from nothing
    warm_start: WarmStart | None = None
    # name -> max | min when the search has two or more objectives (the first is `metric`); {}: one
    objectives: dict[str, str] = field(default_factory=dict)
    # what ASHA ranks trials by at a rung where there are objectives: every one of them
    # ("all-objectives", sweeps.stopping) or the first alone ("first-objective", Ray's ASHA; what
    # plans from before this field ran)
    early_stopping_by: str = FIRST_OBJECTIVE
    # what its compute costs: the instance type its trials run on (a key of sweeps.prices.INSTANCES;
    # "": not known), the price of a GPU-hour (a CPU-hour for CPU trials) its money is counted at
    # (0: none known) and where that price comes from (sweeps.prices.plan_price)
    instance: str = ""
    price_per_hour: float = 0.0
    price_source: str = ""
    # the plan's estimate (sweeps.estimate), made where it has a price or a budget: seconds per
    # trial-epoch, and the epochs' unit-hours (GPU-hours, or CPU-hours; what spent measures, without
    # the trials' starts) expected (ASHA's typical share) and at most (every trial to the end); 0: none
    estimate_epoch_s: float = 0.0
    estimate_hours: float = 0.0
    estimate_most_hours: float = 0.0
    # the limit it never passes by more than an epoch of its running trials (sweeps.budget): as given
    # ("25usd", "6gpu-h"; "": none) and in unit-hours at its price; `sweep resume --budget` replaces both
    budget: str = ""
    budget_hours: float = 0.0
    # population-based training (sweeps.engine.population): "pbt" or "pb2", which change the
    # searched keys of the lowest `quantile` of members every `perturbation_interval` epochs
    # (early_stopping is then off: no member stops early); "asha": none
    scheduler: str = "asha"
    perturbation_interval: int = 0
    quantile: float = 0.0

    @property
    def population(self) -> bool:
        """Whether the sweep is population-based training (PBT or PB2)."""
        return self.scheduler in ("pbt", "pb2")

    @property
    def units(self) -> float:
        """What a trial holds that its price per hour is of: its GPUs, or its CPUs where it takes no GPU."""
        return self.gpu if self.gpu > 0 else self.cpu

    @property
    def unit(self) -> str:
        return "GPU-hours" if self.gpu > 0 else "CPU-hours"

    def amount(self, hours: float) -> str:
        """Unit-hours as the plan's money where it has a price ("$0.021"), else as hours ("0.021 CPU-hours")."""
        return usd(hours * self.price_per_hour) if self.price_per_hour else f"{hours:.3g} {self.unit}"

    @property
    def pareto_stopping(self) -> bool:
        """Whether ASHA ranks every objective at a rung (sweeps.stopping), not the metric alone."""
        return self.early_stopping and len(self.objectives) > 1 and self.early_stopping_by == ALL_OBJECTIVES

    @property
    def stopping_rule(self) -> str:
        """The early-stopping rule in words, as `--dry-run` and the report name it."""
        if self.population:
            how = "perturbed" if self.scheduler == "pbt" else "chosen by a GP bandit (PB2)"
            return (f"population-based training: every {self.perturbation_interval} epochs the lowest "
                    f"{self.quantile:.0%} of the {self.trials} members take the weights of the highest, their "
                    f"{', '.join(self.search)} {how}; no member stops early")
        if not self.early_stopping:
            return "no early stopping: every trial trains them all"
        asha = f"grace period {self.grace_period}, reduction factor {self.reduction_factor:g}"
        if self.pareto_stopping:
            return (f"multi-objective ASHA ({asha}): at each rung the best 1/{self.reduction_factor:g} by "
                    f"non-dominated sorting over {', '.join(self.objectives)} (crowding distance within a front)")
        return f"ASHA on {self.metric} ({asha})"

    @property
    def search_setting(self) -> Setting:
        """How the sweep searches. By default the setting chosen on recorded curves (sweeps/sim/simulate.py:
        quasi-random points); TPE where the search must learn from trials it did not propose (a warm
        start's earlier trials) or ranks several objectives (MOTPE, chosen in benchmarks/multi_objective.py)."""
        if self.setting != "default":
            return setting_named(self.setting)
        if self.warm_start or self.objectives:
            return SETTINGS["tpe-quarter"]
        return default_setting(self.trials)

    @property
    def path(self) -> str:
        return join(self.storage, self.name)

    @property
    def max_epochs(self) -> int:
        return int(self.train["epochs"])

    @property
    def base_config(self) -> TrainConfig:
        return from_dict(self.train)

    def params(self) -> dict[str, Param]:
        return {k: Param(*next(iter(v.items()))) for k, v in self.search.items()}

    def save(self) -> None:
        # in the plan's own order: the first objective is the metric, the search space reads as written
        write_text(plan_file(self.path), json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, run_path: str) -> SweepPlan:
        """The plan a run folder holds; RunFolderError (one line) where it is not a run folder."""
        run_path = absolute(run_path)
        if not is_uri(run_path) and Path(run_path).is_file():
            raise RunFolderError(f"{run_path} is a file, not a run folder; give the folder `sweep run` printed")
        # the first read of every command that opens a run: a store that does not answer is said in seconds
        text = with_time_limit(lambda: read_text_or_none(plan_file(run_path), wait=0), check_timeout_s(), run_path)
        if text is None:
            holder = Holder.parse(read_text_or_none(claim_file(run_path)))
            if holder is not None:
                raise RunFolderError(f"{run_path} is being started by {holder.describe()} and has no plan yet; "
                                     f"try again in a few seconds")
            if not list_folder(run_path):
                raise RunFolderError(f"{run_path}: no such run folder; give the path `sweep run` printed")
            raise RunFolderError(f"{run_path}: not a sweep run folder (no {split_name(plan_file(run_path))[1]}); "
                                 f"give the folder that `sweep run` printed")
        try:
            fields = json.loads(text)
            if "sampler" in fields:  # a plan from before the settings were named: its sampler alone
                sampler = fields.pop("sampler")
                fields.setdefault("setting", sampler if sampler == "default" else OLD_SAMPLERS.get(sampler, sampler))
            setting = fields.get("setting", "default")
            fields["setting"] = OLD_SETTINGS.get(setting, setting)  # renamed since
            warm = fields.get("warm_start")  # {} in plans of a sweep that started from nothing
            fields["warm_start"] = WarmStart.from_dict(warm) if warm else None
            plan = cls(**fields)
        except (ValueError, TypeError, KeyError) as err:
            raise RunFolderError(f"{plan_file(run_path)} is damaged or from another version ({err}); it is "
                                 f"written once when the sweep starts") from None
        # the folder may have moved since: trust where it is now
        if plan.path != run_path:
            storage, name = split_name(run_path)
            plan = replace(plan, storage=storage, name=name)
        return plan


def check_unused(run_path: str) -> None:
    """Refuse to start a new sweep in a folder that holds one, or holds results without a plan."""
    if exists(plan_file(run_path)):
        raise SweepError(f"{run_path} already holds a sweep; continue it with `sweep resume {run_path}` "
                         f"or pass another --name")
    names = [name for name, _ in list_folder(run_path)]
    results = [n for n in names if is_trial_folder(n) or STATE_FILE.match(n) or n in (STATE_ARCHIVE, OPTUNA_DB)]
    if results:
        raise SweepError(f"{run_path} holds a sweep's results ({results[0]}, {len(results)} in all) but no plan "
                         f"({PLAN_FILE}); nothing there is replaced: pass another --name, or move the folder "
                         f"aside first")


def create_run(plan: SweepPlan, command: str) -> None:
    """Write `plan` as a new run folder's first file, ahead of the driver that will start it
    (`sweep resume` does, from the plan): under the run's claim, and refused where the folder
    holds a sweep or results."""
    claim = Claim.take(plan.path, command)
    try:
        check_unused(plan.path)
        plan.save()
    except BaseException:
        claim.release(remove_created=True)
        raise
    claim.release()


def train_command(plan: SweepPlan, params: dict[str, Any]) -> str:
    """The `sweep train` command line that trains `params` alone: the preset, then a --set for
    every training key the sweep changed (by --set, --max-epochs, --seed) and --data-dir."""
    from sweeps.presets import PresetError, load_preset, preset_dir

    preset_file = Path(plan.preset_path).resolve()  # absolute: the command works from any folder
    shipped = preset_file.parent == preset_dir().resolve()
    try:
        preset_train = load_preset(str(preset_file)).train.to_dict()
    except PresetError:  # moved or edited since: the sweep's whole training config
        preset_train = {}
    changed = {k: v for k, v in plan.train.items() if v != preset_train.get(k) and k not in params and k != "data_dir"}
    sets = [f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}" for k, v in {**changed, **params}.items()]
    data_dir = ["--data-dir", plan.train["data_dir"]] if plan.train.get("data_dir") != preset_train.get("data_dir") \
        else []
    return shlex.join(["sweep", "train", plan.preset if shipped else str(preset_file), *data_dir,
                       *(part for item in sets for part in ("--set", item))])

