"""A sweep's plan: the preset with the command line's changes applied, where it runs and
what it may cost. Saved as `resweep.json` in the run folder so that `sweep resume`,
`sweep status` and `analysis` know what the run was."""

from __future__ import annotations

import json
import time
from pathlib import Path
from dataclasses import asdict, dataclass, field
from typing import Any

from trainer.config import ConfigError, TrainConfig, apply_overrides, from_dict

from .errors import RunFolderError, SweepError
from .layout import claim_file, plan_file
from .presets import Param, Preset, PresetError
from .simulate import NSGA2, SETTINGS, Setting, default_setting
from .storage import (StoreError, absolute, check_uri, is_uri, join, list_folder, read_text_or_none,
                      check_timeout_s, split_name, with_time_limit, write_text)

# Training images per epoch of each dataset (for the cost estimate of --dry-run).
TRAIN_IMAGES = {"digits": 1258, "flowers102": 1020, "flowers5": 3496, "cifar10": 45000, "cifar100": 45000,
                "imagefolder": 10000}
# Sustained training throughput assumed for the GPU-hours estimate: 50 TFLOP/s, about
# 2,000 ResNet50 training images/s at 224 (3 x 8.2 GFLOP each), what bf16 reaches on an A100.
ASSUMED_FLOPS = 50e12
# training keys that `sweep run` takes as typed options of their own
TYPED_OPTIONS = {"epochs": "--max-epochs", "data_dir": "--data-dir", "seed": "--seed"}


@dataclass
class SweepPlan:
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
    # The baselines benchmarks/sweep_efficiency.py compares against (not on the command line):
    sampler: str = "default"  # default (see search_setting below) | tpe | random | nsga2
    early_stopping: bool = True  # ASHA; False: every trial trains all its epochs (FIFO)
    mlflow: str = ""  # MLflow tracking URI the trials are logged to; "": none
    wandb: str = ""  # Weights & Biases project the trials are logged to; "": none
    # what --warm-start took from an earlier sweep (sweeps/warmstart.py); {}: started from nothing
    warm_start: dict[str, Any] = field(default_factory=dict)
    # name -> max | min when the search has two or more objectives (the first is `metric`); {}: one
    objectives: dict[str, str] = field(default_factory=dict)

    @property
    def search_setting(self) -> Setting:
        """How the sweep searches. By default the setting chosen on recorded curves (sweeps/simulate.py:
        quasi-random points); TPE where the search must learn from trials it did not propose (a warm
        start's earlier trials) or ranks several objectives (MOTPE, chosen in benchmarks/multi_objective.py)."""
        if self.sampler == "random":
            return SETTINGS["random-seed"]
        if self.sampler == "nsga2":
            return NSGA2
        if self.sampler == "tpe" or self.warm_start or self.objectives:
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

    @classmethod
    def make(cls, p: Preset, overrides: list[str], samples: int | None, concurrency: int | None,
             gpus: float | None, cpus: float | None, storage: str, name: str | None, seed: int | None,
             mlflow: str | None = None, wandb: str | None = None, epochs: int | None = None,
             data_dir: str | None = None) -> SweepPlan:
        """The plan of preset `p` with the command line's values: `overrides` are --set KEY=VALUE
        items; `epochs`, `data_dir` and `seed` come typed from --max-epochs, --data-dir and --seed
        and win over both."""
        base = apply_overrides(p.train, overrides) if overrides else p.train
        typed = {k: v for k, v in (("epochs", epochs), ("data_dir", data_dir), ("seed", seed)) if v is not None}
        for key, value in typed.items():
            try:
                base = from_dict({key: value}, base=base)
            except ConfigError as err:
                raise SweepError(f"{TYPED_OPTIONS[key]} {value}: {err}") from None
        set_keys = {o.split("=", 1)[0].strip() for o in overrides} | set(typed)
        search = {k: {v.kind: v.args} for k, v in p.search.items() if k not in set_keys}  # --set fixes a key
        initial = {k: v for k, v in p.initial.items() if k in search}
        if samples is not None and samples < 1:
            raise SweepError(f"--samples {samples}: need at least 1 trial")
        if concurrency is not None and concurrency < 0:
            raise SweepError(f"--concurrency {concurrency}: must be >= 0 (0: as resources allow)")
        gpu = p.gpu if gpus is None else gpus
        cpu = p.cpu if cpus is None else cpus
        if gpu < 0 or (gpu > 1 and not float(gpu).is_integer()) or cpu <= 0:
            raise SweepError(f"--gpus-per-trial {gpu} / --cpus-per-trial {cpu}: need gpu >= 0 "
                             "(a fraction below 1 or whole GPUs) and cpu > 0")
        if p.grace_period > base.epochs:
            raise SweepError(f"epochs {base.epochs} is below the preset's ASHA grace period {p.grace_period}; "
                             f"train at least {p.grace_period} epochs (--max-epochs or --set epochs)")
        if name is not None and (not name.strip() or "/" in name or name in (".", "..")):
            raise SweepError(f"--name {name!r}: a run name is one folder name, without '/'")
        try:
            check_uri(storage)
        except StoreError as err:
            raise SweepError(f"--storage {err}") from None
        plan = cls(preset=p.name, preset_path=p.path, description=p.description, train=base.to_dict(),
                   search=search, initial=initial, trials=samples or p.trials,
                   concurrency=p.concurrency if concurrency is None else concurrency, gpu=gpu, cpu=cpu,
                   grace_period=p.grace_period, reduction_factor=p.reduction_factor, metric=p.metric,
                   mode=p.mode, seed=base.seed, storage=absolute(storage),
                   name=name or f"{p.name}-{time.strftime('%Y%m%d-%H%M%S')}", overrides=list(overrides),
                   created=time.time(), mlflow=p.mlflow if mlflow is None else mlflow,
                   wandb=p.wandb if wandb is None else wandb, objectives=dict(p.objectives))
        for params in ([plan.initial] if plan.initial else []):
            try:
                from_dict(params, base=base)
            except ConfigError as err:
                raise PresetError(f"{p.path}: initial: {err}") from None
        return plan

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
            from .claim import Holder

            holder = Holder.parse(read_text_or_none(claim_file(run_path)))
            if holder is not None:
                raise RunFolderError(f"{run_path} is being started by {holder.describe()} and has no plan yet; "
                                     f"try again in a few seconds")
            if not list_folder(run_path):
                raise RunFolderError(f"{run_path}: no such run folder; give the path `sweep run` printed")
            raise RunFolderError(f"{run_path}: not a sweep run folder (no {split_name(plan_file(run_path))[1]}); "
                                 f"give the folder that `sweep run` printed")
        try:
            plan = cls(**json.loads(text))
        except (ValueError, TypeError) as err:
            raise RunFolderError(f"{plan_file(run_path)} is damaged or from another version ({err}); it is "
                                 f"written once when the sweep starts") from None
        # the folder may have moved since: trust where it is now
        if plan.path != run_path:
            plan.storage, plan.name = split_name(run_path)
        return plan

    def trial_gflops(self) -> float:
        """Forward GFLOPs of one image of this plan's model, counted on the CPU."""
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from trainer.models import build_model

        from trainer.catalog import BY_NAME as DATASETS

        config = from_dict({"pretrained": False}, base=self.base_config)
        known = DATASETS.get(config.dataset)
        channels = known.channels if known else 3
        model = build_model(config, num_classes=10, in_channels=channels).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, channels, config.image_size, config.image_size))
        return counter.get_total_flops() / 1e9

    def describe(self) -> str:
        epochs_at_most = self.trials * self.max_epochs
        images = TRAIN_IMAGES.get(self.train["dataset"], self.train.get("synthetic_samples", 1000))
        if self.train.get("max_train_samples"):
            images = min(images, self.train["max_train_samples"])
        gflops = self.trial_gflops()
        # forward + backward = 3 forward passes per training image, plus evaluating a validation split
        # of about a third of the training images
        epoch_s = images * (3 + 1 / 3) * gflops * 1e9 / ASSUMED_FLOPS
        gpu_hours = epochs_at_most * epoch_s * max(self.gpu, 0) / 3600
        lines = [
            f"plan for {self.preset}: {self.description}",
            f"  run folder      {self.path}",
            f"  trials          {self.trials} ({self.search_setting.label}, seed {self.seed}; "
            + ("the earlier sweep's best first)" if self.warm_start else "the preset's seed point first)"),
            f"  epochs          at most {self.max_epochs} per trial, {epochs_at_most} in all; "
            + (f"ASHA grace period {self.grace_period}, reduction factor {self.reduction_factor:g}"
               if self.early_stopping else "no early stopping: every trial trains them all"),
            f"  metric          {self.metric} ({self.mode})" + (
                "; objectives " + ", ".join(f"{k} ({v})" for k, v in self.objectives.items())
                + ": a Pareto front, ASHA ranking on the first" if self.objectives else ""),
            f"  resources       {self.gpu:g} GPU and {self.cpu:g} CPU per trial; concurrency "
            f"{self.concurrency or 'as resources allow'}",
            f"  model           {self.train['model']} ({gflops:.2f} GFLOPs/image at {self.train['image_size']}px) "
            f"on {self.train['dataset']} (~{images} training images)",
            "  search space:",
        ]
        for key, param in self.params().items():
            first = f"  (first: {self.initial[key]})" if key in self.initial else ""
            lines.append(f"    {key:<16}{param.describe()}{first}")
        if not self.search:
            lines.append("    (none: every trial trains the same config)")
        if self.warm_start:
            from .warmstart import describe

            lines.append(f"  warm start      {describe(self.warm_start)}")
        logged = "TensorBoard (event files in each trial's folder)"
        logged += f", MLflow at {self.mlflow}" if self.mlflow else ""
        logged += f", W&B project {self.wandb}" if self.wandb else ""
        lines.append(f"  logged to       {logged}")
        if self.gpu > 0:
            lines.append(f"  GPU-hours       about {gpu_hours:.2f} at most ({epochs_at_most} epochs x "
                         f"~{epoch_s:.2g} s x "
                         f"{self.gpu:g} GPU, at an assumed {ASSUMED_FLOPS / 1e12:.0f} TFLOP/s; ASHA stops most "
                         f"trials well before that)")
        else:
            lines.append(f"  GPU-hours       0 (CPU only; {epochs_at_most} trial-epochs at most)")
        return "\n".join(lines)

