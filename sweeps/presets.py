"""Presets: a sweep described in YAML, validated when loaded.

    description: one line
    source: where its setup and published numbers come from
    train:      # fixed TrainConfig keys (see `sweep keys`); `epochs` is the sweep's max epochs
      dataset: digits
      ...
    search:     # KEY: {loguniform: [low, high]} | {uniform: [low, high]} | {int: [low, high]} | {choice: [a, b, ...]}
      lr: {loguniform: [1.0e-4, 1.0e-1]}
    initial:    # the first point evaluated: the seed's own published hyperparameters
      lr: 0.01
    sweep:      # trials, grace_period, reduction_factor, metric, mode, concurrency,
                # objectives: {val_acc: max, latency_ms: min} (two or more; the first is the metric),
                # early_stopping: all-objectives (several objectives: ASHA ranks every one, the default)
                # | first-objective (ASHA ranks the first alone),
                # budget: 25usd | 6gpu-h (never passed: sweeps/budget.py), price_per_hour: USD per GPU-hour,
                # scheduler: asha (the default) | pbt | pb2 (population-based training, sweeps.engine.population:
                # the search space's keys are what it changes, within their ranges) with perturbation_interval
                # (epochs between its decisions) and quantile (the share of members that take others' weights)
      trials: 16
    resources:  # per trial: gpu (fractions allowed, 0 = CPU only), cpu
      gpu: 1
      cpu: 4
    tracking:   # optional: an MLflow tracking URI and/or a Weights & Biases project (see README)
      mlflow: http://127.0.0.1:5000
      wandb: my-project

A parameter may be searched that only some choices use (momentum with sgd): the others ignore it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

import yaml

from sweeps.budget import BudgetLimit
from sweeps.errors import SweepError
from sweeps.search import DISTRIBUTIONS, Param
from sweeps.stopping import ALL_OBJECTIVES, RULES
from trainer.config import CHOICES, KEYS, MUTABLE, ConfigError, TrainConfig, coerce, from_dict
from trainer.metrics import OBJECTIVES, RANKED

TOP_KEYS = ("description", "source", "train", "search", "initial", "sweep", "resources", "tracking")
SWEEP_KEYS = {"trials": int, "grace_period": int, "reduction_factor": float, "metric": str, "mode": str,
              "concurrency": int, "budget": str, "price_per_hour": float, "early_stopping": str, "scheduler": str,
              "perturbation_interval": int, "quantile": float}
SCHEDULERS = ("asha", "pbt", "pb2")  # ASHA early stopping (or none); population-based training, PB2 its GP-bandit form
RESOURCE_KEYS = {"gpu": float, "cpu": float}
TRACKING_KEYS = {"mlflow": str, "wandb": str}


class PresetError(ValueError):
    """A preset cannot be used; one line naming the file, the key and what is allowed."""


@dataclass
class Preset:
    name: str
    path: str  # where it was read from
    description: str
    source: str
    train: TrainConfig  # fixed values, validated
    search: dict[str, Param]
    initial: dict[str, Any]
    trials: int = 16
    grace_period: int = 1
    reduction_factor: float = 3.0
    metric: str = "val_acc"
    mode: str = "max"
    concurrency: int = 0  # 0: as many as the resources allow
    gpu: float = 1.0
    cpu: float = 4.0
    mlflow: str = ""  # MLflow tracking URI; "": off
    wandb: str = ""  # Weights & Biases project; "": off
    # name -> max | min: two or more objectives make the search multi-objective (Optuna's
    # multi-objective TPE); the first is also `metric` (the best trial's; ASHA's alone with
    # early_stopping first-objective). {}: one metric
    objectives: dict[str, str] = field(default_factory=dict)
    # with objectives, what ASHA ranks at a rung: all-objectives (sweeps.stopping) | first-objective
    early_stopping: str = ALL_OBJECTIVES
    budget: str = ""  # the sweep's limit, "25usd" or "6gpu-h" (sweeps.budget); "": none
    price_per_hour: float = 0.0  # the user's USD per GPU-hour (per CPU-hour for CPU trials); 0: the table's
    scheduler: str = "asha"  # asha | pbt | pb2 (SCHEDULERS)
    perturbation_interval: int = 2  # pbt/pb2: epochs between a member's decisions
    quantile: float = 0.25  # pbt/pb2: the lowest share takes the weights of the highest share
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def max_epochs(self) -> int:
        return self.train.epochs

    def trial_config(self, params: dict[str, Any]) -> TrainConfig:
        """The TrainConfig of one trial: the fixed values with the sampled ones on top."""
        return from_dict(params, base=self.train)

    def to_dict(self) -> dict[str, Any]:
        return {
            "description": self.description, "source": self.source,
            "train": {k: v for k, v in self.train.to_dict().items() if k in self.raw.get("train", {})
                      or k == "epochs"},
            "search": {k: {p.kind: p.args} for k, p in self.search.items()},
            "initial": self.initial,
            "sweep": {"trials": self.trials, "grace_period": self.grace_period,
                      "reduction_factor": self.reduction_factor, "metric": self.metric, "mode": self.mode,
                      "concurrency": self.concurrency, **({"objectives": self.objectives} if self.objectives else {}),
                      **({"early_stopping": self.early_stopping} if self.early_stopping != ALL_OBJECTIVES else {}),
                      **({"budget": self.budget} if self.budget else {}),
                      **({"price_per_hour": self.price_per_hour} if self.price_per_hour else {}),
                      **({"scheduler": self.scheduler, "perturbation_interval": self.perturbation_interval,
                          "quantile": self.quantile} if self.scheduler != "asha" else {})},
            "resources": {"gpu": self.gpu, "cpu": self.cpu},
            **({"tracking": {k: v for k, v in (("mlflow", self.mlflow), ("wandb", self.wandb)) if v}}
               if self.mlflow or self.wandb else {}),
        }


def preset_dir() -> Path:
    return Path(str(importlib_resources.files("sweeps") / "presets"))


def preset_names() -> list[str]:
    return sorted(p.stem for p in preset_dir().glob("*.yaml"))


def resolve(name_or_path: str) -> Path:
    """A shipped preset's name, or the path of a user's YAML file."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.is_file():
            raise PresetError(f"{name_or_path}: no such preset file; give a YAML file or one of: "
                              f"{', '.join(preset_names())}")
        return candidate
    shipped = preset_dir() / f"{name_or_path}.yaml"
    if not shipped.is_file():
        raise PresetError(f"unknown preset {name_or_path!r}; known presets: {', '.join(preset_names())} "
                          f"(or give the path of a YAML file)")
    return shipped


def _number(where: str, value: Any) -> float:
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string; take the number it means
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PresetError(f"{where}: {value!r} is not a number")
    return value


def parse_param(where: str, key: str, spec: Any) -> Param:
    if key not in KEYS:
        raise ConfigError(f"unknown config key {key!r}")
    if not isinstance(spec, dict) or len(spec) != 1:
        raise PresetError(f"{where}: write a distribution as one of "
                          + ", ".join(f"{{{d}: [...]}}" for d in DISTRIBUTIONS))
    kind, args = next(iter(spec.items()))
    if kind not in DISTRIBUTIONS:
        raise PresetError(f"{where}: unknown distribution {kind!r}; allowed: {', '.join(DISTRIBUTIONS)}")
    if not isinstance(args, list) or not args:
        raise PresetError(f"{where}: {kind} needs a list, e.g. {kind}: [low, high]")
    if kind == "choice":
        values = [coerce(key, v) for v in args]
        if len(set(map(str, values))) != len(values):
            raise PresetError(f"{where}: choice lists a value twice")
        for v in values:  # each choice must make a valid config value
            from_dict({key: v})
        return Param(kind, values)
    if len(args) != 2:
        raise PresetError(f"{where}: {kind} takes [low, high], got {len(args)} values")
    low, high = (_number(where, a) for a in args)
    if kind == "int":
        if not (float(low).is_integer() and float(high).is_integer()):
            raise PresetError(f"{where}: int bounds must be whole numbers")
        low, high = int(low), int(high)
    else:
        low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise PresetError(f"{where}: needs low < high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise PresetError(f"{where}: loguniform needs low > 0, got {low}")
    if key in CHOICES:
        raise PresetError(f"{where}: {key} takes a name; use {{choice: [...]}} of {', '.join(CHOICES[key])}")
    coerce(key, low)  # an int/float distribution on a string or bool key is refused here
    if isinstance(coerce(key, low), bool):
        raise PresetError(f"{where}: {key} is true/false; use {{choice: [true, false]}}")
    return Param(kind, [low, high])


def _section(where: str, data: dict, key: str) -> dict:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise PresetError(f"{where}: {key} must be a mapping of keys to values")
    return value


def parse_preset(data: Any, name: str, path: str) -> Preset:
    if not isinstance(data, dict):
        raise PresetError(f"{path}: a preset is a YAML mapping with keys {', '.join(TOP_KEYS)}")
    for key in data:
        if key not in TOP_KEYS:
            raise PresetError(f"{path}: unknown key {key!r}; allowed: {', '.join(TOP_KEYS)}")
    try:
        train = from_dict(_section(path, data, "train"))
    except ConfigError as err:
        raise PresetError(f"{path}: train: {err}") from None
    search: dict[str, Param] = {}
    for key, spec in _section(path, data, "search").items():
        try:
            search[key] = parse_param(f"{path}: search.{key}", key, spec)
        except ConfigError as err:
            raise PresetError(f"{path}: search.{key}: {err}") from None
    initial = {}
    for key, value in _section(path, data, "initial").items():
        if key not in search:
            raise PresetError(f"{path}: initial.{key}: not in the search space; searched keys: "
                              f"{', '.join(search) or 'none'}")
        try:
            value = coerce(key, value)
        except ConfigError as err:
            raise PresetError(f"{path}: initial.{key}: {err}") from None
        if not search[key].contains(value):
            raise PresetError(f"{path}: initial.{key}={value!r} lies outside {search[key].describe()}")
        initial[key] = value
    sweep: dict[str, Any] = {"objectives": _objectives(path, _section(path, data, "sweep"))}
    if sweep["objectives"]:  # the first objective is the sweep's metric
        first, first_mode = next(iter(sweep["objectives"].items()))
        given = _section(path, data, "sweep")
        if given.get("metric", first) != first or given.get("mode", first_mode) != first_mode:
            raise PresetError(f"{path}: sweep.metric/mode must be the first objective ({first}: {first_mode}) or "
                              f"left out")
        sweep.update(metric=first, mode=first_mode)
    for section, schema in (("sweep", SWEEP_KEYS), ("resources", RESOURCE_KEYS), ("tracking", TRACKING_KEYS)):
        for key, value in _section(path, data, section).items():
            if section == "sweep" and key == "objectives":
                continue
            if key not in schema:
                raise PresetError(f"{path}: unknown key {section}.{key}; allowed: {', '.join(schema)}")
            kind = schema[key]
            if section == "sweep" and key == "early_stopping" and (value not in RULES or not sweep["objectives"]):
                raise PresetError(f"{path}: sweep.early_stopping={value!r}: " + (
                    f"allowed: {', '.join(RULES)} (none at all: `sweep run --no-early-stopping`)"
                    if value not in RULES else "it chooses how several objectives are ranked, and this preset "
                    "has one metric; leave it out"))
            if section == "sweep" and key == "budget" and isinstance(value, (int, float)):
                raise PresetError(f"{path}: sweep.budget={value!r}: give its unit too, as 25usd, 6gpu-h or 2cpu-h")
            if kind is str:
                if not isinstance(value, str):
                    raise PresetError(f"{path}: {section}.{key} must be a string")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    (kind is int and not float(value).is_integer()):
                raise PresetError(f"{path}: {section}.{key}={value!r} must be a {kind.__name__}")
            sweep[key] = kind(value)
    preset = Preset(name=name, path=path, description=str(data.get("description", "")),
                    source=str(data.get("source", "")), train=train, search=search, initial=initial,
                    raw=data, **sweep)
    if preset.metric not in RANKED:
        raise PresetError(f"{path}: sweep.metric={preset.metric!r}; allowed: {', '.join(RANKED)}")
    if preset.mode not in ("max", "min"):
        raise PresetError(f"{path}: sweep.mode={preset.mode!r}; allowed: max, min")
    if preset.trials < 1 or preset.grace_period < 1 or preset.reduction_factor <= 1 or preset.concurrency < 0:
        raise PresetError(f"{path}: sweep needs trials >= 1, grace_period >= 1, reduction_factor > 1, "
                          f"concurrency >= 0")
    if preset.gpu < 0 or preset.cpu <= 0 or (preset.gpu > 1 and not float(preset.gpu).is_integer()):
        raise PresetError(f"{path}: resources need gpu >= 0 (a fraction below 1, or whole GPUs) and cpu > 0")
    if preset.grace_period > preset.max_epochs:
        raise PresetError(f"{path}: sweep.grace_period={preset.grace_period} exceeds train.epochs="
                          f"{preset.max_epochs}")
    if not 0 <= preset.price_per_hour < math.inf:
        raise PresetError(f"{path}: sweep.price_per_hour={preset.price_per_hour!r} must be a number above 0")
    if preset.scheduler not in SCHEDULERS:
        raise PresetError(f"{path}: sweep.scheduler={preset.scheduler!r}; allowed: {', '.join(SCHEDULERS)}")
    if preset.scheduler != "asha":
        _check_population(preset, path)
    if preset.budget:
        try:  # its form here; whether it fits the sweep (its unit, a price for money), in its plan
            BudgetLimit.read(preset.budget, option=f"{path}: sweep.budget")
        except SweepError as err:
            raise PresetError(str(err)) from None
    return preset


def _check_population(preset: Preset, path: str) -> None:
    """Population-based training changes the searched keys between epochs, within their ranges:
    each must be one the trainer can change then (trainer.config.MUTABLE), over a range."""
    name = preset.scheduler
    if preset.objectives:
        raise PresetError(f"{path}: sweep.scheduler={name} ranks its members by one metric; drop sweep.objectives "
                          f"or use scheduler asha")
    if not preset.search:
        raise PresetError(f"{path}: sweep.scheduler={name} changes the searched keys; search at least one of "
                          f"{', '.join(MUTABLE)}")
    for key, param in preset.search.items():
        if key not in MUTABLE:
            raise PresetError(f"{path}: search.{key}: {name} changes only {', '.join(MUTABLE)} between epochs; fix "
                              f"{key} under train:, or use scheduler asha")
        if param.kind not in ("loguniform", "uniform"):
            raise PresetError(f"{path}: search.{key}: {name} perturbs a value within a range; write "
                              f"{{loguniform: [low, high]}} or {{uniform: [low, high]}}")
    if "lr" in preset.search and preset.train.scheduler != "constant":
        raise PresetError(f"{path}: {name} sets lr between epochs, which train.scheduler={preset.train.scheduler} "
                          f"also sets; use train.scheduler: constant (the schedule is what {name} finds)")
    if preset.train.head_epochs:
        raise PresetError(f"{path}: {name} trains one phase; set train.head_epochs: 0")
    if preset.trials < 2:
        raise PresetError(f"{path}: sweep.scheduler={name} needs a population: sweep.trials >= 2")
    if preset.concurrency:
        raise PresetError(f"{path}: sweep.concurrency: {name} trains its members as resources allow, those that do "
                          f"not fit taking turns; leave concurrency out")
    if not 1 <= preset.perturbation_interval < preset.max_epochs:
        raise PresetError(f"{path}: sweep.perturbation_interval={preset.perturbation_interval} must be at least 1 "
                          f"and below train.epochs={preset.max_epochs}")
    if not 0 < preset.quantile <= 0.5:
        raise PresetError(f"{path}: sweep.quantile={preset.quantile} must be above 0 and at most 0.5")


def _objectives(path: str, sweep: dict[str, Any]) -> dict[str, str]:
    """sweep.objectives: {name: max | min}, at least two, the first a per-epoch metric."""
    raw = sweep.get("objectives")
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) < 2:
        raise PresetError(f"{path}: sweep.objectives needs two or more `name: max|min` entries, for example "
                          f"{{val_acc: max, latency_ms: min}}; for one, set sweep.metric")
    for name, mode in raw.items():
        if name not in OBJECTIVES:
            raise PresetError(f"{path}: sweep.objectives.{name}: unknown; allowed: {', '.join(OBJECTIVES)}")
        if mode not in ("max", "min"):
            raise PresetError(f"{path}: sweep.objectives.{name}={mode!r}; allowed: max, min")
    first = next(iter(raw))
    if first not in RANKED:
        raise PresetError(f"{path}: sweep.objectives: the first ({first}) is what ASHA ranks epochs by, so it must "
                          f"be a per-epoch metric: {', '.join(RANKED)}")
    return {str(k): str(v) for k, v in raw.items()}


def load_preset(name_or_path: str) -> Preset:
    path = resolve(name_or_path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise PresetError(f"{path}: cannot read it ({err.__class__.__name__})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "not valid YAML"
        raise PresetError(f"{path}: malformed YAML{where}: {problem}; fix the file and run again") from None
    return parse_preset(data, path.stem, str(path))
