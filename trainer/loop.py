"""The training loop: `train(config, report=callback) -> metrics`.

One epoch = `train_one_epoch` + `evaluate` on the validation split; after each the
callback gets the epoch's metrics and a function that writes a checkpoint (the sweep turns
that into a Ray Tune report with a checkpoint; `sweep train` prints a table row). The last
epoch also evaluates the test split. A checkpoint holds everything needed to continue
exactly: weights, optimizer, schedule, epoch, phase and RNG states.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .augment import EvalTransform, PilEvalTransform, PilTrainTransform, TrainTransform
from .checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from .config import MUTABLE, ConfigError, TrainConfig, from_dict, values_at
from .cost import measure_cost
from .data import BatchLoader, DataBundle, Loader, PilLoader, Split
from .datasets import load_data
from .errors import DIVERGED, OUT_OF_MEMORY, TrainerError
from .models import build_model, set_backbone_trainable, train_mode
from .optim import Schedule, build_optimizer, build_schedule, l1_penalty, set_values

SaveFn = Callable[[Path], Path]
ReportFn = Callable[[dict[str, Any], SaveFn], None]


class TrialHalted(TrainerError):
    """The run cannot go on and retrying the same configuration would fail the same way.
    `kind` names the failure; `metrics` are the last epoch's (possibly empty)."""

    kind = "halted"

    def __init__(self, message: str, metrics: dict[str, Any]):
        super().__init__(message)
        self.metrics = metrics


class DivergedError(TrialHalted):
    """The loss became NaN or infinite."""

    kind = DIVERGED


class OutOfMemory(TrialHalted):
    """The GPU ran out of memory at this batch size."""

    kind = OUT_OF_MEMORY


def resolve_device(config: TrainConfig) -> torch.device:
    if config.device == "cuda" and not torch.cuda.is_available():
        raise TrainerError("device=cuda but no CUDA GPU is visible; set device=auto or device=cpu")
    if config.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def autocast_for(config: TrainConfig, device: torch.device):
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda"
                                              and torch.cuda.is_bf16_supported())  # pre-Ampere GPUs: fp32
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


class Phase:
    """Optimizer and schedule of one training phase (phase 0: head only, phase 1: all)."""

    def __init__(self, index: int, config: TrainConfig, model: nn.Module, steps_per_epoch: int):
        head_only = index == 0 and config.head_epochs > 0
        set_backbone_trainable(model, trainable=not (head_only or config.freeze_backbone))
        if head_only:
            name, lr, sched, epochs = config.head_optimizer, config.head_lr, config.head_scheduler, config.head_epochs
        else:
            name, lr, sched, epochs = config.optimizer, config.lr, config.scheduler, config.epochs - config.head_epochs
        self.index = index
        self.first_epoch = 0 if head_only else config.head_epochs
        self.optimizer = build_optimizer(name, model.parameters(), lr=lr, weight_decay=config.weight_decay,
                                         momentum=config.momentum, nesterov=config.nesterov)
        self.schedule: Schedule = build_schedule(
            sched, self.optimizer, lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch, min_lr=config.min_lr,
            warmup_epochs=config.warmup_epochs, step_size=config.step_size, gamma=config.gamma,
            plateau_patience=config.plateau_patience, cycle_epochs=config.cycle_epochs, pct_start=config.pct_start)


def phase_of(epoch: int, config: TrainConfig) -> int:
    return 0 if epoch < config.head_epochs else 1


def train_one_epoch(model: nn.Module, loader: Loader, phase: Phase, config: TrainConfig,
                    device: torch.device) -> dict[str, float]:
    train_mode(model)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    params = [p for p in model.parameters() if p.requires_grad]
    start = time.perf_counter()
    for images, labels in loader:
        if config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast_for(config, device):
            logits = model(images)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)
        objective = loss + config.l1 * l1_penalty(model) if config.l1 else loss
        phase.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        if config.grad_clip:
            nn.utils.clip_grad_norm_(params, config.grad_clip)
        phase.optimizer.step()
        phase.schedule.after_batch()
        loss_sum += loss.detach() * len(labels)
        correct += (logits.argmax(1) == labels).sum()
        seen += len(labels)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return {"train_loss": loss_sum.item() / max(seen, 1), "train_acc": correct.item() / max(seen, 1),
            "images_per_s": seen / max(seconds, 1e-9), "train_time_s": seconds}


@torch.no_grad()
def predict(model: nn.Module, loader: Loader, config: TrainConfig, device: torch.device) -> torch.Tensor:
    """Logits (float32, on the CPU) of every image of `loader`, in order."""
    model.eval()
    out = []
    for images, _ in loader:
        if config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast_for(config, device):
            out.append(model(images).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def evaluate(model: nn.Module, loader: Loader, config: TrainConfig, device: torch.device,
             prefix: str = "val") -> dict[str, float]:
    logits = predict(model, loader, config, device)
    labels = loader.split.labels.cpu()
    if len(labels) == 0:
        return {}
    metrics = {f"{prefix}_loss": F.cross_entropy(logits, labels).item(),
               f"{prefix}_acc": (logits.argmax(1) == labels).float().mean().item()}
    if logits.shape[1] > 5:
        top5 = logits.topk(5, dim=1).indices
        metrics[f"{prefix}_top5"] = (top5 == labels[:, None]).any(1).float().mean().item()
    return metrics


def eval_loader(split: Split, config: TrainConfig, data: DataBundle,
                device: torch.device | None = None) -> Loader:
    """Batches of a split for evaluation, through the fast or the PIL path as `config` says."""
    device = device or split.images.device
    batch = max(config.batch_size, 256)
    if config.data_path == "pil":
        return PilLoader(split, batch, PilEvalTransform(config.image_size, data.mean, data.std, config.augment),
                         device, num_workers=config.num_workers)
    return BatchLoader(split.to(device), batch, EvalTransform(config.image_size, data.mean, data.std, config.augment))


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


# Keys a resumed run may change: where data and compute come from, not what is trained.
RESUMABLE_CHANGES = {"data_dir", "download", "device", "num_workers", "eval_test", "data_path"}


def check_resumable(saved: dict[str, Any], config: TrainConfig) -> None:
    """Refuse to continue a checkpoint under a config that would not continue the same run."""
    current = config.to_dict()
    changed = sorted(k for k in current if k in saved and saved[k] != current[k] and k not in RESUMABLE_CHANGES
                     and not (k in MUTABLE and (k != "lr" or config.scheduler == "constant")))
    if changed == ["epochs"] and config.scheduler in ("constant", "step", "plateau", "cyclic"):
        return  # these schedules do not depend on the run's length: training longer is fine
    if changed:
        shown = ", ".join(f"{k}={saved[k]!r}" for k in changed[:4])
        raise ConfigError(f"the checkpoint was trained with {shown}; resume with the same values "
                          f"(a changed epochs count needs a constant, step, plateau or cyclic schedule; a changed "
                          f"lr, the constant one)")


def train(config: TrainConfig, report: ReportFn | None = None, resume_from: Path | dict | None = None,
          data: DataBundle | None = None) -> dict[str, Any]:
    """Train one model as `config` says; returns the last epoch's metrics (with the test split's).

    `report(metrics, save)` is called after every epoch; `save(folder)` writes the checkpoint
    there. `resume_from` (a checkpoint file or its folder) continues a run exactly where it
    stopped (a checkpoint dict already loaded works too). `data` lets callers share one loaded dataset between runs."""
    config.validate()
    device = resolve_device(config)
    torch.manual_seed(config.seed)
    data_gen = torch.Generator().manual_seed(config.seed)
    augment_gen = torch.Generator().manual_seed(config.seed + 1)
    data = data or load_data(config)
    train_loader: Loader
    if config.data_path == "pil":
        train_loader = PilLoader(data.train, config.batch_size,
                                 PilTrainTransform(config.image_size, data.mean, data.std, config.augment), device,
                                 shuffle=True, generator=data_gen, num_workers=config.num_workers)
    else:
        train_loader = BatchLoader(data.train.to(device), config.batch_size,
                                   TrainTransform(config.image_size, data.mean, data.std, config.augment, augment_gen),
                                   shuffle=True, generator=data_gen)
    val_loader = eval_loader(data.val, config, data, device)

    model = build_model(config, data.num_classes, data.channels).to(device)
    if config.channels_last:  # faster on GPUs and CPUs alike (benchmarks/cpu_step.py)
        model = model.to(memory_format=torch.channels_last)

    start_epoch, history, lineage = 0, [], []
    state = load_checkpoint(resume_from, map_location=device) if isinstance(resume_from, (str, Path)) else resume_from
    if state is not None:
        check_resumable(state["config"], config)
        model.load_state_dict(state["model"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        lineage = list(state.get("lineage", []))  # [epoch, trial] pairs: whose weights it took, when (PBT)
    phase = Phase(phase_of(start_epoch, config), config, model, len(train_loader))
    if state is not None:
        phase.optimizer.load_state_dict(state["optimizer"])
        phase.schedule.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), device)
        data_gen.set_state(state["data_generator"])
        augment_gen.set_state(state["augment_generator"])

    metrics: dict[str, Any] = dict(history[-1]) if history else {}
    try:
        for epoch in range(start_epoch, config.epochs):
            if phase_of(epoch, config) != phase.index:
                phase = Phase(phase_of(epoch, config), config, model, len(train_loader))
            values: dict[str, Any] = values_at(config, epoch + 1)
            if not (config.head_epochs and phase.index == 0):  # the head phase keeps its own optimizer's
                set_values(phase.optimizer, phase.schedule, values, lr=config.scheduler == "constant")
            epoch_config = dataclasses.replace(config, **values)
            lr = phase.optimizer.param_groups[0]["lr"]
            started = time.perf_counter()
            metrics = {"epoch": epoch + 1, "phase": phase.index if config.head_epochs else 1, "epoch_lr": lr,
                       **{f"epoch_{k}": float(values[k]) for k in MUTABLE if k != "lr"}}
            metrics.update(train_one_epoch(model, train_loader, phase, epoch_config, device))
            metrics.update(evaluate(model, val_loader, config, device))
            if not math.isfinite(metrics["train_loss"]) or not math.isfinite(metrics["val_loss"]):
                raise DivergedError(f"loss diverged to {metrics['train_loss']} in epoch {epoch + 1} "
                                    f"(lr={lr:g}); lower lr or set grad_clip", metrics)
            phase.schedule.after_epoch(metrics["val_loss"])
            if epoch + 1 == config.epochs and config.eval_test and len(data.test):
                metrics.update(evaluate(model, eval_loader(data.test, config, data, device), config, device, "test"))
            if epoch == start_epoch and config.measure_cost:  # the weights do not change it: once per run
                metrics.update(measure_cost(model, config, data.channels, device, autocast_for(config, device)))
            metrics["epoch_time_s"] = time.perf_counter() - started
            metrics["finished_at"] = time.time()  # wall clock: orders the epochs of concurrent runs
            history.append(dict(metrics))

            # bound now: the epoch, its phase and the history as they are at this epoch's end
            def save(folder: Path, _epoch=epoch + 1, _phase=phase, _history=tuple(history)) -> Path:
                checkpoint = {
                    "model": model.state_dict(), "optimizer": _phase.optimizer.state_dict(),
                    "scheduler": _phase.schedule.state_dict(), "epoch": _epoch, "phase": _phase.index,
                    "rng": _rng_state(device), "data_generator": data_gen.get_state(),
                    "augment_generator": augment_gen.get_state(), "config": config.to_dict(),
                    "history": list(_history), "classes": list(data.classes), "mean": list(data.mean),
                    "std": list(data.std), "lineage": lineage,
                }
                return save_checkpoint(checkpoint, Path(folder) / CHECKPOINT_FILE)

            if report is not None:
                report(dict(metrics), save)
    except torch.cuda.OutOfMemoryError:
        del model, phase
        torch.cuda.empty_cache()
        raise OutOfMemory(f"CUDA out of memory at batch_size={config.batch_size} ({config.model}, "
                          f"{config.image_size}px); lower batch_size or give the trial a whole GPU",
                          dict(history[-1]) if history else {}) from None
    return metrics


def load_model(checkpoint: Path | dict, device: str | torch.device = "cpu") -> tuple[nn.Module, TrainConfig, dict]:
    """The trained model of a checkpoint (in eval mode), its config and the checkpoint dict."""
    state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, map_location=device)
    config = from_dict({k: v for k, v in state["config"].items()}, base=TrainConfig())
    config.pretrained = False  # the weights come from the checkpoint
    model = build_model(config, len(state["classes"]), in_channels=len(state["mean"]))  # a mean per channel
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config, state
