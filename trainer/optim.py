"""Optimizers and LR schedules, picked by name.

`Schedule` wraps a torch scheduler with the granularity it is stepped at: onecycle and
cyclic every batch, plateau on the validation loss after each epoch, the others every epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from .config import OPTIMIZERS, SCHEDULERS, ConfigError


def build_optimizer(name: str, params, lr: float, weight_decay: float, momentum: float = 0.9,
                    nesterov: bool = False) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                               weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "radam":
        return torch.optim.RAdam(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"optimizer={name!r} is not known; allowed: {', '.join(OPTIMIZERS)}")


@dataclass
class Schedule:
    scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau
    per_batch: bool  # step after every optimizer step, else once per epoch (plateau: on val_loss)

    def after_batch(self) -> None:
        if self.per_batch and not isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step()

    def after_epoch(self, val_loss: float) -> None:
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val_loss)
        elif not self.per_batch:
            self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)


def build_schedule(name: str, optimizer: torch.optim.Optimizer, *, lr: float, epochs: int, steps_per_epoch: int,
                   min_lr: float = 0.0, warmup_epochs: int = 0, step_size: int = 10, gamma: float = 0.1,
                   plateau_patience: int = 2, cycle_epochs: float = 2.0, pct_start: float = 0.25) -> Schedule:
    """The schedule `name` over `epochs` epochs of `steps_per_epoch` optimizer steps."""
    sched = torch.optim.lr_scheduler
    if name == "constant":
        return Schedule(sched.LambdaLR(optimizer, lambda _: 1.0), per_batch=False)
    if name == "onecycle":
        return Schedule(sched.OneCycleLR(optimizer, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                         pct_start=pct_start, cycle_momentum=False), per_batch=True)
    if name == "cyclic":  # project 000: triangular between min_lr and lr
        half = max(1, round(cycle_epochs * steps_per_epoch / 2))
        return Schedule(sched.CyclicLR(optimizer, base_lr=min_lr, max_lr=lr, step_size_up=half,
                                       mode="triangular", cycle_momentum=False), per_batch=True)
    if name == "step":
        return Schedule(sched.StepLR(optimizer, step_size=step_size, gamma=gamma), per_batch=False)
    if name == "plateau":
        return Schedule(sched.ReduceLROnPlateau(optimizer, mode="min", factor=gamma, patience=plateau_patience),
                        per_batch=False)
    if name == "cosine":
        floor = min_lr / lr

        def factor(epoch: int) -> float:
            if epoch < warmup_epochs:
                return (epoch + 1) / (warmup_epochs + 1)
            span = max(1, epochs - warmup_epochs)
            progress = min(1.0, (epoch - warmup_epochs) / span)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        return Schedule(sched.LambdaLR(optimizer, factor), per_batch=False)
    raise ConfigError(f"scheduler={name!r} is not known; allowed: {', '.join(SCHEDULERS)}")


def set_values(optimizer: torch.optim.Optimizer, schedule: Schedule, values: dict[str, float], lr: bool) -> None:
    """Train on with `values` (trainer.config.MUTABLE keys): weight decay and momentum (where the
    optimizer has one) always; the learning rate where `lr` (the constant schedule, whose base it
    also becomes: it steps back to its base every epoch)."""
    for group in optimizer.param_groups:
        group["weight_decay"] = values["weight_decay"]
        if "momentum" in group:
            group["momentum"] = values["momentum"]
        if lr:
            group["lr"] = values["lr"]
    scheduler = schedule.scheduler
    if lr and isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        scheduler.base_lrs = [values["lr"]] * len(optimizer.param_groups)


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of |w| over the trainable weights (project 004's L1 regulariser)."""
    return cast(torch.Tensor, sum(p.abs().sum() for p in model.parameters() if p.requires_grad))
