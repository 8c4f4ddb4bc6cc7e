"""One run = one typed config.

`TrainConfig` holds every knob of a training run under a flat key, the same key that
presets and `--set KEY=VALUE` use. `from_dict` and `apply_overrides` refuse unknown keys
and values of the wrong type or outside their allowed set, with a one-line message.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, fields, replace
from typing import Any, get_type_hints

from .catalog import BY_NAME as CATALOG


class ConfigError(ValueError):
    """A user-facing config problem; its message is one line naming the key and the fix."""


# Allowed values of the keys that take a name. The registries in models/optim/data check
# against these same tuples, so a name is listed once.
MODELS = ("resnet9", "resnet18_cifar", "resnet18", "resnet34", "resnet50", "resnet101")
HEADS = ("linear", "mlp", "deep")
NORMS = ("batch", "group", "layer")
OPTIMIZERS = ("sgd", "adam", "adamw", "radam")
SCHEDULERS = ("constant", "onecycle", "cyclic", "step", "plateau", "cosine")
AUGMENTS = ("none", "light", "cifar", "imagenet")
DATASETS = tuple(CATALOG)  # trainer.catalog describes each; trainer.datasets loads it
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
DATA_PATHS = ("tensor", "pil")
SYNTHETIC_REGIONS = ("center", "top_left", "bottom_right", "anywhere")
# Keys a run may change between epochs without rebuilding its model or optimizer: `epoch_values`
# schedules them, population-based training (sweeps.engine.population) perturbs them, and a run
# resumed with new values of them goes on under those (lr: with the constant schedule alone).
MUTABLE = ("lr", "weight_decay", "momentum", "label_smoothing")

CHOICES: dict[str, tuple[str, ...]] = {
    "model": MODELS,
    "head": HEADS,
    "norm": NORMS,
    "optimizer": OPTIMIZERS,
    "head_optimizer": OPTIMIZERS,
    "scheduler": SCHEDULERS,
    "head_scheduler": SCHEDULERS,
    "augment": AUGMENTS,
    "dataset": DATASETS,
    "device": DEVICES,
    "precision": PRECISIONS,
    "data_path": DATA_PATHS,
    "synthetic_region": SYNTHETIC_REGIONS,
}


@dataclass
class TrainConfig:
    # --- data
    dataset: str = "digits"  # registry name, see trainer.datasets
    data_dir: str | None = None  # data root; None: $RESWEEP_DATA or ~/.cache/resweep/data
    download: bool = True  # fetch the files where torchvision can
    data_path: str = "tensor"  # tensor: uint8 cache + batch augmentation on device; pil: per-image PIL workers
    num_workers: int = 2  # DataLoader workers of the pil path
    image_size: int = 32  # side of the square training/eval crop fed to the model
    augment: str = "light"  # augmentation preset: none | light | cifar | imagenet
    val_fraction: float = 0.1  # validation hold-out where a dataset has no official one
    max_train_samples: int = 0  # train on this many images drawn at random, the same each run (0: all)
    synthetic_classes: int = 10  # synthetic: number of classes
    synthetic_samples: int = 1000  # synthetic: images in train+val+test together
    synthetic_region: str = "center"  # synthetic: where the class signal sits
    # --- model
    model: str = "resnet9"  # resnet9 | resnet18_cifar | torchvision resnet18/34/50/101
    width: int = 64  # resnet9: channels of its first block (64 is the seed's)
    norm: str = "batch"  # resnet18_cifar: batch | group | layer
    groups: int = 2  # resnet18_cifar with norm=group: GroupNorm groups
    head: str = "linear"  # torchvision resnets: linear | mlp (project 000) | deep (project 002)
    pretrained: bool = False  # torchvision resnets: start from ImageNet weights
    freeze_backbone: bool = False  # train the head only, for the whole run
    # --- optimisation
    optimizer: str = "sgd"  # sgd | adam | adamw | radam
    lr: float = 0.05  # learning rate; the peak for onecycle and cyclic
    momentum: float = 0.9  # sgd momentum
    nesterov: bool = False  # sgd Nesterov momentum
    weight_decay: float = 5e-4  # decoupled for adamw, L2 otherwise
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    l1: float = 0.0  # L1 penalty factor on all weights (project 004: 5e-4)
    grad_clip: float = 0.0  # clip the gradient norm to this (0: off)
    scheduler: str = "onecycle"  # constant | onecycle | cyclic | step | plateau | cosine
    min_lr: float = 0.0  # floor of cyclic (its base_lr) and cosine
    warmup_epochs: int = 0  # cosine: linear warm-up epochs
    step_size: int = 10  # step: epochs between decays
    gamma: float = 0.1  # step and plateau: decay factor
    plateau_patience: int = 2  # plateau: epochs without val_loss improvement before a decay
    cycle_epochs: float = 2.0  # cyclic: epochs of one full triangle (up and down)
    pct_start: float = 0.25  # onecycle: fraction of steps spent rising
    # --- two-phase fine-tuning (project 000): head_epochs > 0 trains the head alone first
    head_epochs: int = 0  # phase-1 epochs on a frozen backbone (counted within `epochs`)
    head_optimizer: str = "adam"  # phase-1 optimizer
    head_lr: float = 0.01  # phase-1 learning rate
    head_scheduler: str = "constant"  # phase-1 schedule
    # --- loop
    epochs: int = 10  # total epochs, both phases together
    batch_size: int = 64  # training batch size
    seed: int = 0  # seeds weights, data order and augmentation
    device: str = "auto"  # auto: cuda when present
    precision: str = "auto"  # auto: bf16 autocast on GPUs with bf16 (Ampere on), else fp32
    channels_last: bool = True  # NHWC memory format (faster on GPU and CPU: benchmarks/cpu_step.py)
    eval_test: bool = True  # evaluate the final model on the test split
    measure_cost: bool = True  # report params, FLOPs and inference latency with the first epoch (trainer.cost)
    # values of MUTABLE keys from an epoch on, "EPOCH:key=value,key=value;EPOCH:..." (1: the first
    # epoch); the rest of the run keeps the values above. A schedule population-based training
    # found, replayed (`analysis schedule` prints it); lr in it needs scheduler=constant
    epoch_values: str = ""

    def validate(self) -> TrainConfig:
        for key, allowed in CHOICES.items():
            value = getattr(self, key)
            if value not in allowed:
                raise ConfigError(f"{key}={value!r} is not known; allowed: {', '.join(allowed)}")
        positive = ("image_size", "epochs", "batch_size", "synthetic_classes", "synthetic_samples",
                    "width", "step_size", "groups")
        for key in positive:
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key}={getattr(self, key)} must be > 0")
        non_negative = ("lr", "min_lr", "weight_decay", "momentum", "l1", "grad_clip", "label_smoothing",
                        "head_epochs", "warmup_epochs", "num_workers", "max_train_samples", "head_lr",
                        "plateau_patience")
        for key in non_negative:
            value = getattr(self, key)
            if not value >= 0 or (isinstance(value, float) and math.isinf(value)):
                raise ConfigError(f"{key}={value} must be a finite number >= 0")
        if self.lr == 0:
            raise ConfigError("lr=0 must be > 0")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction={self.val_fraction} must be between 0 and 1")
        if not 0 < self.pct_start < 1:
            raise ConfigError(f"pct_start={self.pct_start} must be between 0 and 1")
        if self.label_smoothing >= 1:
            raise ConfigError(f"label_smoothing={self.label_smoothing} must be below 1")
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"gamma={self.gamma} must be in (0, 1]")
        if self.head_epochs >= self.epochs and self.head_epochs > 0:
            raise ConfigError(f"head_epochs={self.head_epochs} must be below epochs={self.epochs}")
        if self.cycle_epochs <= 0:
            raise ConfigError(f"cycle_epochs={self.cycle_epochs} must be > 0")
        if self.model in ("resnet9", "resnet18_cifar") and (self.pretrained or self.head != "linear"):
            raise ConfigError(f"model={self.model} has no ImageNet weights and only a linear head; "
                              "set pretrained=false head=linear, or pick a torchvision resnet")
        if self.epoch_values:
            changes = parse_epoch_values(self.epoch_values)
            if self.head_epochs:
                raise ConfigError("epoch_values schedules a one-phase run; set head_epochs=0")
            if any("lr" in values for values in changes.values()) and self.scheduler != "constant":
                raise ConfigError(f"epoch_values sets lr, which scheduler={self.scheduler} also sets; "
                                  f"use scheduler=constant")
            late = [epoch for epoch in changes if epoch > self.epochs]
            if late:
                raise ConfigError(f"epoch_values names epoch {late[0]}, past epochs={self.epochs}")
            for epoch, values in changes.items():
                try:  # each value within its key's bounds
                    from_dict(values, base=replace(self, epoch_values=""))
                except ConfigError as err:
                    raise ConfigError(f"epoch_values, epoch {epoch}: {err}") from None
        if (self.head_epochs or self.freeze_backbone) and self.model in ("resnet9", "resnet18_cifar"):
            raise ConfigError(f"head_epochs/freeze_backbone need a backbone/head split: "
                              f"use a torchvision resnet, not model={self.model}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_epoch_values(text: str) -> dict[int, dict[str, float]]:
    """`epoch_values` as {epoch: {key: value}}, epochs in order; ConfigError (one line) where it
    is malformed. Nothing in it is evaluated: numbers are read as numbers."""
    example = "for example epoch_values=1:lr=0.05;4:lr=0.01,weight_decay=0.0001"
    changes: dict[int, dict[str, float]] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        epoch_text, sep, assignments = part.partition(":")
        if not sep or not epoch_text.strip().isdigit() or int(epoch_text) < 1:
            raise ConfigError(f"epoch_values: {part!r} is not EPOCH:key=value (epochs count from 1); {example}")
        values: dict[str, float] = {}
        for item in (a.strip() for a in assignments.split(",")):
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or key not in MUTABLE:
                raise ConfigError(f"epoch_values: {item!r} in epoch {int(epoch_text)}: give key=value with a key "
                                  f"of {', '.join(MUTABLE)}; {example}")
            try:
                values[key] = coerce(key, raw.strip())
            except ConfigError as err:
                raise ConfigError(f"epoch_values, epoch {int(epoch_text)}: {err}") from None
        if int(epoch_text) in changes:
            raise ConfigError(f"epoch_values names epoch {int(epoch_text)} twice; {example}")
        changes[int(epoch_text)] = values
    return dict(sorted(changes.items()))


def values_at(config: TrainConfig, epoch: int) -> dict[str, float]:
    """The MUTABLE values epoch `epoch` (1-based) trains with: the config's own, then every
    `epoch_values` change up to it."""
    values = {key: getattr(config, key) for key in MUTABLE}
    for start, change in parse_epoch_values(config.epoch_values).items():
        if start <= epoch:
            values.update(change)
    return values


def format_epoch_values(changes: dict[int, dict[str, float]]) -> str:
    """`epoch_values` text of {epoch: {key: value}}; floats written exactly (repr), so the text
    reads back to the same numbers."""
    return ";".join(f"{epoch}:" + ",".join(f"{k}={float(v)!r}" for k, v in values.items())
                    for epoch, values in sorted(changes.items()) if values)


KEYS = tuple(f.name for f in fields(TrainConfig))
_TYPES = get_type_hints(TrainConfig)


def _unknown_key(key: str, where: str = "") -> ConfigError:
    close = difflib.get_close_matches(key, KEYS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "; see `sweep keys` for the known keys"
    return ConfigError(f"unknown config key {key!r}{where}{hint}")


def coerce(key: str, value: Any) -> Any:
    """Check (and, for strings from the command line, parse) one value against its field type."""
    if key not in _TYPES:
        raise _unknown_key(key)
    kind = _TYPES[key]
    optional = str(kind).endswith("| None") or "Optional" in str(kind)
    base = str if "str" in str(kind) else kind
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key} may not be empty")
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{key}={value!r} must be true or false")
    if base is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} must be an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}={value!r} must be an integer")
    if base is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} must be a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}={value!r} must be a number")
    # strings
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{key}={value!r} must be a string")


def from_dict(values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """A validated config from `base` (or the defaults) with `values` applied."""
    if not isinstance(values, dict):
        raise ConfigError(f"a training config must be a mapping of keys to values, not {type(values).__name__}")
    merged = (base or TrainConfig()).to_dict()
    for key, value in values.items():
        merged[key] = coerce(str(key), value)
    return TrainConfig(**merged).validate()


def parse_override(item: str) -> tuple[str, Any]:
    """`KEY=VALUE` -> (key, value), the text checked against the key's type; never evaluated.
    A string key takes the text verbatim (spaces, '#' and all); `none` or nothing clears an
    optional key."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r} is not KEY=VALUE (for example --set lr=0.01)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {item!r} has no key (for example --set lr=0.01)")
    if key not in KEYS:
        raise _unknown_key(key, " in --set")
    optional = "None" in str(_TYPES[key])
    if optional and raw.strip().lower() in ("", "none", "null"):
        return key, None
    return key, coerce(key, raw if "str" in str(_TYPES[key]) else raw.strip())


def apply_overrides(config: TrainConfig, items: list[str]) -> TrainConfig:
    """`config` with --set KEY=VALUE `items` applied. Changing `dataset` brings that data set's
    own image_size and augment (trainer.catalog) unless the items set them too: MNIST at 28 px
    without flips, not the 224 px and flips of a flowers preset."""
    updates = dict(parse_override(item) for item in items)
    known = CATALOG.get(str(updates.get("dataset", "")))
    if known is not None and updates["dataset"] != config.dataset:
        updates = {"image_size": known.image_size, "augment": known.augment, **updates}
    return from_dict(updates, base=config)


__all__ = ["TrainConfig", "ConfigError", "from_dict", "apply_overrides", "parse_override", "coerce", "KEYS",
           "CHOICES", "MUTABLE", "parse_epoch_values", "values_at", "format_epoch_values"]
