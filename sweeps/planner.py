"""The one builder of a sweep's plan: a preset with the command line's values, checked, then
frozen (`sweeps.runfolder.plan.SweepPlan`); and the plan as `--dry-run` prints it, with what it
may cost."""

from __future__ import annotations

import time
from dataclasses import replace

from sweeps.errors import SweepError
from sweeps.presets import Preset, PresetError
from sweeps.runfolder.plan import SweepPlan
from sweeps.runfolder.storage import StoreError, absolute, check_uri
from sweeps.search import SETTINGS, setting_named
from sweeps.warmstart import describe, load_warm_start
from trainer.config import ConfigError, apply_overrides, from_dict

# Training images per epoch of each dataset (for the cost estimate of --dry-run).
TRAIN_IMAGES = {"digits": 1258, "flowers102": 1020, "flowers5": 3496, "cifar10": 45000, "cifar100": 45000,
                "imagefolder": 10000}

# Sustained training throughput assumed for the GPU-hours estimate: 50 TFLOP/s, about
# 2,000 ResNet50 training images/s at 224 (3 x 8.2 GFLOP each), what bf16 reaches on an A100.
ASSUMED_FLOPS = 50e12

# training keys that `sweep run` takes as typed options of their own
TYPED_OPTIONS = {"epochs": "--max-epochs", "data_dir": "--data-dir", "seed": "--seed"}


def make_plan(p: Preset, overrides: list[str], samples: int | None, concurrency: int | None,
              gpus: float | None, cpus: float | None, storage: str, name: str | None, seed: int | None,
              mlflow: str | None = None, wandb: str | None = None, epochs: int | None = None,
              data_dir: str | None = None, early_stopping: bool = True, setting: str = "default",
              warm_start: str | None = None) -> SweepPlan:
    """The plan of preset `p` with the command line's values: `overrides` are --set KEY=VALUE
    items; `epochs`, `data_dir` and `seed` come typed from --max-epochs, --data-dir and --seed
    and win over both. `early_stopping` off trains every trial to the end; `setting` names a
    search setting (sweeps.search; "default": the plan chooses); `warm_start` is an earlier
    sweep whose best configurations come first (in place of the preset's initial configuration)."""
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
    if setting != "default":
        try:
            setting_named(setting)
        except KeyError:
            raise SweepError(f"no search setting {setting!r}; known: {', '.join(SETTINGS)}, nsga2") from None
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
    plan = SweepPlan(preset=p.name, preset_path=p.path, description=p.description, train=base.to_dict(),
                     search=search, initial=initial, trials=samples or p.trials,
                     concurrency=p.concurrency if concurrency is None else concurrency, gpu=gpu, cpu=cpu,
                     grace_period=p.grace_period, reduction_factor=p.reduction_factor, metric=p.metric,
                     mode=p.mode, seed=base.seed, storage=absolute(storage),
                     name=name or f"{p.name}-{time.strftime('%Y%m%d-%H%M%S')}", overrides=list(overrides),
                     created=time.time(), mlflow=p.mlflow if mlflow is None else mlflow,
                     wandb=p.wandb if wandb is None else wandb, objectives=dict(p.objectives),
                     early_stopping=early_stopping, setting=setting)
    for params in ([plan.initial] if plan.initial else []):
        try:
            from_dict(params, base=base)
        except ConfigError as err:
            raise PresetError(f"{p.path}: initial: {err}") from None
    if warm_start:
        plan = replace(plan, warm_start=load_warm_start(warm_start, plan), initial={})
    return plan


def trial_gflops(plan: SweepPlan) -> float:
    """Forward GFLOPs of one image of this plan's model, counted on the CPU."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from trainer.catalog import BY_NAME as DATASETS
    from trainer.models import build_model

    config = from_dict({"pretrained": False}, base=plan.base_config)
    known = DATASETS.get(config.dataset)
    channels = known.channels if known else 3
    model = build_model(config, num_classes=10, in_channels=channels).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, channels, config.image_size, config.image_size))
    return counter.get_total_flops() / 1e9

def describe_plan(plan: SweepPlan) -> str:
    epochs_at_most = plan.trials * plan.max_epochs
    images = TRAIN_IMAGES.get(plan.train["dataset"], plan.train.get("synthetic_samples", 1000))
    if plan.train.get("max_train_samples"):
        images = min(images, plan.train["max_train_samples"])
    gflops = trial_gflops(plan)
    # forward + backward = 3 forward passes per training image, plus evaluating a validation split
    # of about a third of the training images
    epoch_s = images * (3 + 1 / 3) * gflops * 1e9 / ASSUMED_FLOPS
    gpu_hours = epochs_at_most * epoch_s * max(plan.gpu, 0) / 3600
    lines = [
        f"plan for {plan.preset}: {plan.description}",
        f"  run folder      {plan.path}",
        f"  trials          {plan.trials} ({plan.search_setting.label}, seed {plan.seed}; "
        + ("the earlier sweep's best first)" if plan.warm_start else "the preset's initial configuration first)"),
        f"  epochs          at most {plan.max_epochs} per trial, {epochs_at_most} in all; "
        + (f"ASHA grace period {plan.grace_period}, reduction factor {plan.reduction_factor:g}"
           if plan.early_stopping else "no early stopping: every trial trains them all"),
        f"  metric          {plan.metric} ({plan.mode})" + (
            "; objectives " + ", ".join(f"{k} ({v})" for k, v in plan.objectives.items())
            + ": a Pareto front, ASHA ranking on the first" if plan.objectives else ""),
        f"  resources       {plan.gpu:g} GPU and {plan.cpu:g} CPU per trial; concurrency "
        f"{plan.concurrency or 'as resources allow'}",
        f"  model           {plan.train['model']} ({gflops:.2f} GFLOPs/image at {plan.train['image_size']}px) "
        f"on {plan.train['dataset']} (~{images} training images)",
        "  search space:",
    ]
    for key, param in plan.params().items():
        first = f"  (first: {plan.initial[key]})" if key in plan.initial else ""
        lines.append(f"    {key:<16}{param.describe()}{first}")
    if not plan.search:
        lines.append("    (none: every trial trains the same config)")
    if plan.warm_start:
        lines.append(f"  warm start      {describe(plan.warm_start)}")
    logged = "TensorBoard (event files in each trial's folder)"
    logged += f", MLflow at {plan.mlflow}" if plan.mlflow else ""
    logged += f", W&B project {plan.wandb}" if plan.wandb else ""
    lines.append(f"  logged to       {logged}")
    if plan.gpu > 0:
        lines.append(f"  GPU-hours       about {gpu_hours:.2f} at most ({epochs_at_most} epochs x "
                     f"~{epoch_s:.2g} s x "
                     f"{plan.gpu:g} GPU, at an assumed {ASSUMED_FLOPS / 1e12:.0f} TFLOP/s; ASHA stops most "
                     f"trials well before that)")
    else:
        lines.append(f"  GPU-hours       0 (CPU only; {epochs_at_most} trial-epochs at most)")
    return "\n".join(lines)

