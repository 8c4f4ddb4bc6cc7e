"""What a plan will cost before it runs: seconds per epoch, GPU-hours and money, at most (every
trial to the end) and expected (the share of epochs ASHA trains).

An epoch of a trial is its training images x 3 forward passes' FLOPs (forward and backward),
plus its validation pass; each trial adds its start (`TRIAL_START_S`) and one pass over the
test split. The FLOPs are counted on the plan's model; the image counts are the data set's own
(trainer.catalog; an image folder is counted). The speed: on a GPU, its sustained share of the
datasheet peak (sweeps.prices); on the CPU, this machine's, measured here on the plan's model.
ASHA's share comes from its replay (sweeps.sim.asha) over curves of random quality: which
trials it stops depends on the order they arrive in, not on the curves' shapes, and on such
curves the replay gives the share it gave on recorded ones (BENCHMARKS.md, "Cost estimate").
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from sweeps.prices import (
    GPU_SOURCE,
    GPUS,
    INSTANCES,
    PRICE_SOURCES,
    PRICES_AS_OF,
    SUSTAINED_SHARE,
    SUSTAINED_SOURCE,
    Instance,
    find_worker,
    usd,
)
from sweeps.runfolder.plan import SweepPlan
from trainer.config import from_dict

# A trial's own start, beyond its epochs: its actor (a process importing torch), its data
# loaded or read from the node's cache, its model built: about 8 s on this project's 2-core
# machines, each half of it (a trial's timeline, 2026-12-02).
TRIAL_START_S = 8.0
TRAINING_PASSES = 3  # a training image costs a forward and a backward pass, about 3 forward passes


@dataclass(frozen=True)
class Speed:
    flops: float  # FLOP/s one trial's training sustains
    where: str  # the hardware, in words
    source: str  # how the figure was reached


@dataclass(frozen=True)
class Estimate:
    images: tuple[int, int, int]  # (train, val, test) per trial
    gflops: float  # forward GFLOPs per image
    speed: Speed
    epoch_s: float  # one trial-epoch: training and validation
    trial_s: float  # a trial's start and its test pass
    epochs_at_most: int  # every trial to the end
    share: tuple[float, float, float]  # ASHA's share of those epochs: median, 10th and 90th percentile
    units: float  # GPUs per trial, or CPUs where it has none: what a price per hour is of
    trials: int  # the plan's trials, each paying trial_s once

    def hours(self, share: float = 1.0, starts: bool = True) -> float:
        """Resource-hours (GPU-hours, or CPU-hours) for `share` of the epochs, with each trial's
        start and test pass unless `starts` is off (the epochs alone: what a sweep's spent measures)."""
        return (self.epochs_at_most * share * self.epoch_s + self.trials * self.trial_s * starts) * self.units / 3600


def images_of(plan: SweepPlan) -> tuple[int, int, int]:
    """(train, val, test) images one trial of `plan` sees."""
    from trainer.catalog import BY_NAME, split_sizes
    from trainer.datasets import count_images

    config = plan.base_config
    info = BY_NAME[config.dataset]
    counts = None
    if config.dataset == "synthetic":
        counts = (config.synthetic_samples, 0, 0)
    elif config.dataset == "imagefolder":
        counts = count_images(config) or (0, 0, 0)
    train, val, test = split_sizes(info, config.val_fraction, counts)
    if config.max_train_samples:
        train = min(train, config.max_train_samples)
    return train, val, test if config.eval_test else 0


def plan_gflops(plan: SweepPlan) -> float:
    """Forward GFLOPs of one image of `plan`'s model (trainer.cost counts them)."""
    import torch

    from trainer.catalog import BY_NAME
    from trainer.cost import count_flops
    from trainer.models import build_model

    config = from_dict({"pretrained": False}, base=plan.base_config)
    info = BY_NAME[config.dataset]
    model = build_model(config, num_classes=info.classes or 10, in_channels=info.channels).eval()
    return count_flops(model, torch.zeros(1, info.channels, config.image_size, config.image_size)) / 1e9


def cpu_speed(plan: SweepPlan, seconds: float = 1.0) -> Speed:
    """This machine's training FLOP/s for one trial of `plan` (its CPUs per trial as torch
    threads), from timed training steps of its model at its batch size and image size."""
    import torch

    from trainer.catalog import BY_NAME
    from trainer.cost import count_flops
    from trainer.models import build_model

    config = from_dict({"pretrained": False}, base=plan.base_config)
    info = BY_NAME[config.dataset]
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(plan.cpu)))
    try:
        model = build_model(config, num_classes=info.classes or 10, in_channels=info.channels)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        batch = max(2, min(config.batch_size, 64))
        x = torch.zeros(batch, info.channels, config.image_size, config.image_size)
        y = torch.zeros(batch, dtype=torch.long)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        flops = count_flops(model.eval(), x[:1]) * TRAINING_PASSES * batch
        model.train()

        def step() -> None:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()

        step()  # the first step allocates
        steps, start = 0, time.perf_counter()
        while steps < 2 or time.perf_counter() - start < seconds:
            step()
            steps += 1
        per_step = (time.perf_counter() - start) / steps
    finally:
        torch.set_num_threads(threads)
    return Speed(flops / per_step, f"this machine's CPU, {max(1, int(plan.cpu))} thread(s) per trial",
                 f"measured: {steps} training steps of this model at batch {batch}")


def gpu_speed(gpu: str) -> Speed:
    found = GPUS[gpu]
    return Speed(found.training_flops, f"1 {gpu}",
                 f"{SUSTAINED_SHARE:.1%} of the {gpu}'s {found.peak_tflops:g} TFLOP/s peak")


def asha_share(plan: SweepPlan, draws: int = 200) -> tuple[float, float, float]:
    """ASHA's share of the epochs of every trial to the end, for `plan`'s trials, rungs and
    concurrency (1.0 without early stopping): median, 10th and 90th percentile of `draws` replays
    over curves of random quality (and, where ASHA ranks several objectives, random costs)."""
    if not plan.early_stopping or plan.max_epochs <= plan.grace_period:
        return 1.0, 1.0, 1.0
    import numpy as np

    from sweeps.sim.asha import Curve, replay

    rng = np.random.default_rng(plan.seed)
    concurrency = plan.concurrency or min(plan.trials, 8)  # as resources allow: cluster.yaml's 8 workers at most
    others = list(plan.objectives.values())[1:] if plan.pareto_stopping else []
    shares = []
    for _ in range(draws):
        quality = rng.random(plan.trials)
        costs = rng.random((plan.trials, len(others)))
        curves = [Curve([q * (1 - 0.5 ** e) for e in range(1, plan.max_epochs + 1)],
                        others=[[c] * plan.max_epochs for c in cost]) for q, cost in zip(quality, costs)]
        shares.append(replay(curves, concurrency, plan.grace_period, plan.reduction_factor, "max",
                             objectives=["max", *others] if others else ()).share)
    return float(np.median(shares)), float(np.percentile(shares, 10)), float(np.percentile(shares, 90))


def estimate(plan: SweepPlan, gpu: str | None) -> Estimate:
    """The estimate of `plan`, its trials on `gpu` (a key of sweeps.prices.GPUS), or on this
    machine's CPU where the plan's trials take no GPU."""
    images = images_of(plan)
    gflops = plan_gflops(plan)
    speed = gpu_speed(gpu or "A100") if plan.gpu > 0 else cpu_speed(plan)
    train, val, test = images
    epoch_s = (train * TRAINING_PASSES + val) * gflops * 1e9 / speed.flops
    trial_s = TRIAL_START_S + test * gflops * 1e9 / speed.flops
    return Estimate(images=images, gflops=gflops, speed=speed, epoch_s=epoch_s, trial_s=trial_s,
                    epochs_at_most=plan.trials * plan.max_epochs, share=asha_share(plan),
                    units=plan.units, trials=plan.trials)


def money(hours: float, per_hour: float) -> str:
    return usd(hours * per_hour)


# Estimates made in this process, by what they depend on: the plan records its estimate and
# `--dry-run` prints it, from one timing of the CPU
_MADE: dict[str, Estimate] = {}


def plan_estimate(plan: SweepPlan) -> Estimate:
    """`estimate` on the plan's own instance type's GPU (an A100's speed where none is known)."""
    key = json.dumps([plan.train, plan.trials, plan.gpu, plan.cpu, plan.instance, plan.early_stopping,
                      plan.pareto_stopping, plan.grace_period, plan.reduction_factor, plan.concurrency, plan.seed],
                     sort_keys=True, default=str)
    if key not in _MADE:
        chosen = INSTANCES.get(plan.instance)
        _MADE[key] = estimate(plan, chosen.gpu if chosen and plan.gpu > 0 else None)
    return _MADE[key]


def describe_cost(plan: SweepPlan, est: Estimate) -> list[str]:
    """The plan's lines on time and money from its estimate `est` (`plan_estimate`): epoch time,
    resource-hours at most and expected, and money on its instance type (on demand and spot) or
    at the user's price, with the sources."""
    chosen: Instance | None = INSTANCES.get(plan.instance)
    on_gpu = plan.gpu > 0
    unit = "GPU-hours" if on_gpu else "CPU-hours"
    median, low, high = est.share
    most, expected = est.hours(), est.hours(median)
    train, val, test = est.images
    lines = [f"  epoch time      ~{est.epoch_s:.3g} s per trial-epoch ({train:,} training + {val:,} validation "
             f"images x {est.gflops:.3g} GFLOPs on {est.speed.where}: {est.speed.flops / 1e12:.3g} TFLOP/s, "
             f"{est.speed.source}); + ~{est.trial_s:.3g} s per trial (its start, {test:,} test images)"]
    if plan.early_stopping:
        lines.append(f"  {unit:<16}at most {most:.3g} (every trial to the end); expected {expected:.3g} "
                     f"({'multi-objective ' * plan.pareto_stopping}ASHA trains ~{median:.0%} of the epochs, "
                     f"{low:.0%}-{high:.0%} in 200 replays)")
    else:
        lines.append(f"  {unit:<16}{most:.3g} (no early stopping: every trial to the end)")
    if plan.price_source == "--price-per-hour":
        lines.append(f"  cost            at most {money(most, plan.price_per_hour)}, expected "
                     f"{money(expected, plan.price_per_hour)}, at ${plan.price_per_hour:g} per {unit[:-1]} "
                     f"(--price-per-hour)")
    elif chosen and on_gpu:
        worker = find_worker()
        where = chosen.name + (f" ({worker.source}{', spot' if worker.spot else ', on demand'})"
                               if worker and worker.instance == chosen.name else "")
        lines.append(f"  cost            on {where}: {chosen.gpus} {chosen.gpu}, ${chosen.on_demand:g}/h on demand, "
                     f"~${chosen.spot:g}/h spot; at most {money(most, chosen.per_gpu_hour(False))} on demand, "
                     f"{money(most, chosen.per_gpu_hour(True))} spot; expected "
                     f"{money(expected, chosen.per_gpu_hour(False))} on demand, "
                     f"{money(expected, chosen.per_gpu_hour(True))} spot")
        lines.append(f"  prices          {chosen.cloud} list prices of {PRICES_AS_OF} (spot: a typical price then; it "
                     f"moves by the hour: --price-per-hour for yours), from {PRICE_SOURCES[chosen.cloud]}")
        lines.append(f"  GPU speed       {GPU_SOURCE}; sustained share from {SUSTAINED_SOURCE}")
        lines.append(f"  counted at      ${plan.price_per_hour:.3g} per GPU-hour ({plan.price_source}): the money the "
                     f"sweep shows as it runs")
    elif on_gpu:
        lines.append("  cost            no instance type known (the speed is an A100's): pass --instance "
                     "(sweeps/prices.py lists them) or --price-per-hour")
    else:
        lines.append("  cost            pass --price-per-hour (per CPU-hour) for money")
    return lines
