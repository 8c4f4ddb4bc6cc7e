"""The one builder of a sweep's plan: a preset with the command line's values, checked, then
frozen (`sweeps.runfolder.plan.SweepPlan`); and the plan as `--dry-run` prints it, with what it
may cost."""

from __future__ import annotations

import time
from dataclasses import replace

from sweeps.budget import parse_budget
from sweeps.errors import SweepError
from sweeps.presets import Preset, PresetError
from sweeps.prices import INSTANCES, find_worker, plan_price, usd
from sweeps.runfolder.plan import SweepPlan
from sweeps.runfolder.storage import StoreError, absolute, check_uri
from sweeps.search import SETTINGS, setting_named
from sweeps.warmstart import describe, load_warm_start
from trainer.config import ConfigError, apply_overrides, from_dict

# training keys that `sweep run` takes as typed options of their own
TYPED_OPTIONS = {"epochs": "--max-epochs", "data_dir": "--data-dir", "seed": "--seed"}


def make_plan(p: Preset, overrides: list[str], samples: int | None, concurrency: int | None,
              gpus: float | None, cpus: float | None, storage: str, name: str | None, seed: int | None,
              mlflow: str | None = None, wandb: str | None = None, epochs: int | None = None,
              data_dir: str | None = None, early_stopping: bool = True, setting: str = "default",
              warm_start: str | None = None, instance: str | None = None,
              price_per_hour: float | None = None, budget: str | None = None) -> SweepPlan:
    """The plan of preset `p` with the command line's values: `overrides` are --set KEY=VALUE
    items; `epochs`, `data_dir` and `seed` come typed from --max-epochs, --data-dir and --seed
    and win over both. `early_stopping` off trains every trial to the end; `setting` names a
    search setting (sweeps.search; "default": the plan chooses); `warm_start` is an earlier
    sweep whose best configurations come first (in place of the preset's initial configuration).
    `instance` names the instance type the trials run on (sweeps.prices; by default the GPU
    worker of cluster.yaml where the plan takes GPUs), `price_per_hour` the user's price of a
    GPU-hour (a CPU-hour for CPU trials), which wins over the table's (and the preset's); `budget`
    the limit the sweep never passes ("25usd", "6gpu-h"; the preset's by default, sweeps.budget).
    A plan with a price or a budget records its estimate (sweeps.estimate)."""
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
    if instance and instance not in INSTANCES:
        raise SweepError(f"--instance {instance}: not in the price table; known: {', '.join(INSTANCES)} "
                         f"(or pass --price-per-hour)")
    if price_per_hour is not None and not 0 < price_per_hour < float("inf"):  # nan and inf too
        raise SweepError(f"--price-per-hour {price_per_hour:g}: a price must be a number above 0")
    if samples is not None and samples < 1:
        raise SweepError(f"--samples {samples}: need at least 1 trial")
    if concurrency is not None and concurrency < 0:
        raise SweepError(f"--concurrency {concurrency}: must be >= 0 (0: as resources allow)")
    gpu = p.gpu if gpus is None else gpus
    cpu = p.cpu if cpus is None else cpus
    if gpu < 0 or (gpu > 1 and not float(gpu).is_integer()) or cpu <= 0:
        raise SweepError(f"--gpus-per-trial {gpu} / --cpus-per-trial {cpu}: need gpu >= 0 "
                         "(a fraction below 1 or whole GPUs) and cpu > 0")
    if p.scheduler != "asha" and (samples or p.trials) < 2:
        raise SweepError(f"--samples {samples}: {p.scheduler} needs a population of at least 2 members")
    if p.scheduler != "asha" and not p.perturbation_interval < base.epochs:
        raise SweepError(f"epochs {base.epochs}: {p.scheduler} decides every {p.perturbation_interval} epochs, so "
                         f"train more than that (--max-epochs)")
    if p.scheduler != "asha" and concurrency:
        raise SweepError(f"--concurrency {concurrency}: {p.scheduler} trains its members as resources allow, those "
                         f"that do not fit taking turns; leave it out")
    if p.scheduler != "asha" and set(p.search) & set_keys:
        fixed = sorted(set(p.search) & set_keys)[0]
        raise SweepError(f"--set {fixed}: {p.scheduler} changes {fixed} between epochs; leave it searched, or fix it "
                         f"in a preset with scheduler asha")
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
                     early_stopping=early_stopping and p.scheduler == "asha", early_stopping_by=p.early_stopping,
                     setting=setting, scheduler=p.scheduler,
                     perturbation_interval=p.perturbation_interval if p.scheduler != "asha" else 0,
                     quantile=p.quantile if p.scheduler != "asha" else 0.0)
    worker = find_worker() if gpu > 0 else None  # a CPU sweep's trials are not on the cluster's GPU workers
    instance = instance or (worker.instance if worker and worker.instance in INSTANCES else "")
    price, source = plan_price(instance, price_per_hour or p.price_per_hour or None, worker)
    if source == "--price-per-hour" and price_per_hour is None:
        source = "the preset's price_per_hour"
    plan = replace(plan, instance=instance, price_per_hour=price, price_source=source)
    option = "--budget" if budget is not None else f"{p.path}: sweep.budget"
    budget = p.budget if budget is None else budget
    if plan.price_per_hour or budget:
        from sweeps.estimate import plan_estimate

        est = plan_estimate(plan)
        plan = replace(plan, estimate_epoch_s=est.epoch_s, estimate_hours=est.hours(est.share[0], starts=False),
                       estimate_most_hours=est.hours(starts=False))
    if budget:
        plan = with_budget(plan, budget, option=option)
    for params in ([plan.initial] if plan.initial else []):
        try:
            from_dict(params, base=base)
        except ConfigError as err:
            raise PresetError(f"{p.path}: initial: {err}") from None
    if warm_start:
        plan = replace(plan, warm_start=load_warm_start(warm_start, plan), initial={})
    return plan


def with_budget(plan: SweepPlan, budget: str, spent: float = 0.0, epoch_s: float | None = None,
                option: str = "--budget") -> SweepPlan:
    """`plan` with the limit `budget` (sweeps.budget), refused in one line where it cannot pay for
    what it must: more than `spent` (unit-hours a resumed run has spent) by one epoch at least,
    and a new sweep's first trial to its end (no trial starts whose worst case passes it). An
    epoch is `epoch_s` seconds (a resumed run's measured pace), else the plan's estimate."""
    limit = parse_budget(budget, plan.gpu > 0, plan.price_per_hour, option)
    hours = limit.hours(plan.price_per_hour)
    epoch = (epoch_s or plan.estimate_epoch_s) * plan.units / 3600
    if hours - spent < epoch:
        already = f"this run has spent {plan.amount(spent)} already, and " if spent else ""
        raise SweepError(f"{option} {budget}: {already}one epoch of a trial costs about {plan.amount(epoch)}; "
                         f"give at least {plan.amount(spent + epoch)}")
    if not spent and hours < plan.max_epochs * epoch:
        raise SweepError(f"{option} {budget}: buys about {hours / epoch:.0f} epochs, and no trial starts unless "
                         f"its worst case ({plan.max_epochs} epochs, {plan.amount(plan.max_epochs * epoch)}) fits; "
                         f"give at least that, or fewer --max-epochs")
    return replace(plan, budget=str(limit), budget_hours=hours)


def describe_plan(plan: SweepPlan) -> str:
    from sweeps.estimate import describe_cost, plan_estimate

    epochs_at_most = plan.trials * plan.max_epochs
    est = plan_estimate(plan)  # the model built and its FLOPs counted, the images counted: once
    gflops, images = est.gflops, est.images[0]
    lines = [
        f"plan for {plan.preset}: {plan.description}",
        f"  run folder      {plan.path}",
        f"  trials          {plan.trials} ({plan.search_setting.label}, seed {plan.seed}; "
        + ("the earlier sweep's best first)" if plan.warm_start else "the preset's initial configuration first)"),
        f"  epochs          at most {plan.max_epochs} per trial, {epochs_at_most} in all",
        f"  early stopping  {plan.stopping_rule}",
        f"  metric          {plan.metric} ({plan.mode})" + (
            "; objectives " + ", ".join(f"{k} ({v})" for k, v in plan.objectives.items())
            + ": a Pareto front" if plan.objectives else ""),
        f"  resources       {plan.gpu:g} GPU and {plan.cpu:g} CPU per trial; concurrency "
        f"{plan.concurrency or 'as resources allow'}",
        f"  model           {plan.train['model']} ({gflops:.3g} GFLOPs/image at {plan.train['image_size']}px) "
        f"on {plan.train['dataset']} ({images:,} training images)",
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
    lines += describe_cost(plan, est)
    if plan.budget:
        trial_h = plan.max_epochs * est.epoch_s * plan.units / 3600
        money = f" = {usd(plan.budget_hours * plan.price_per_hour)}" if plan.price_per_hour else ""
        lines.append(f"  budget          {plan.budget} ({plan.budget_hours:.3g} {plan.unit}{money}): pays "
                     f"~{plan.budget_hours / trial_h:.3g} trials to their last epoch; no trial starts unless "
                     f"it fits, and at the limit the running trials stop after the epoch they are in "
                     f"(`sweep resume RUN --budget ...` goes on)")
    return "\n".join(lines)
