"""The project's training loop against a minimal hand-written PyTorch loop: same model, data,
batch size, optimizer and schedule, run alternately in one process. What is measured is the
loop's own overhead (metrics kept on the device, schedule stepping, loaders), so both sides
use the `none` augmentation preset. Ends with `ratio=<project/bare>` (images/s); goal >= 0.97.

    python benchmarks/trainer_overhead.py [--rounds 5] [--model resnet9] [--width 32] [--size 32]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.augment import TrainTransform  # noqa: E402
from trainer.config import from_dict  # noqa: E402
from trainer.data import BatchLoader  # noqa: E402
from trainer.datasets import load_data  # noqa: E402
from trainer.loop import Phase, autocast_for, resolve_device, train_one_epoch  # noqa: E402
from trainer.models import build_model  # noqa: E402


def bare_epoch(model, images, labels, optimizer, scheduler, batch_size, mean, std, device, config) -> float:
    """The loop one writes by hand: shuffle, slice, normalise, forward, backward, step."""
    model.train()
    n = len(labels)
    order = torch.randperm(n).to(device)
    start = time.perf_counter()
    seen = 0
    for b in range(n // batch_size):
        idx = order[b * batch_size:(b + 1) * batch_size]
        x = (images[idx].float() / 255 - mean) / std
        y = labels[idx]
        if config.channels_last:  # the same memory format as the trainer's
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_for(config, device):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        seen += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", default="resnet9")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--samples", type=int, default=2048)
    args = parser.parse_args()
    config = from_dict({"dataset": "synthetic", "synthetic_samples": args.samples, "synthetic_classes": 10,
                        "image_size": args.size, "model": args.model, "width": args.width, "augment": "none",
                        "batch_size": args.batch_size, "epochs": 100, "optimizer": "sgd", "lr": 0.05,
                        "scheduler": "onecycle"})
    device = resolve_device(config)
    torch.manual_seed(0)
    data = load_data(config)
    train = data.train.to(device)
    mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)

    ours = build_model(config, data.num_classes, data.channels).to(device)
    bare = build_model(config, data.num_classes, data.channels).to(device)
    if config.channels_last:
        ours, bare = ours.to(memory_format=torch.channels_last), bare.to(memory_format=torch.channels_last)
    loader = BatchLoader(train, config.batch_size, TrainTransform(config.image_size, data.mean, data.std, "none",
                                                                  torch.Generator()),
                         shuffle=True, generator=torch.Generator().manual_seed(0))
    phase = Phase(1, config, ours, len(loader))
    optimizer = torch.optim.SGD(bare.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, epochs=100,
                                                    steps_per_epoch=len(train) // config.batch_size,
                                                    pct_start=0.25, cycle_momentum=False)
    # warm-up both (allocator, cuDNN autotune, thread pools)
    train_one_epoch(ours, loader, phase, config, device)
    bare_epoch(bare, train.images, train.labels, optimizer, scheduler, config.batch_size, mean, std, device, config)
    ours_rates, bare_rates = [], []
    for _ in range(args.rounds):
        ours_rates.append(train_one_epoch(ours, loader, phase, config, device)["images_per_s"])
        bare_rates.append(bare_epoch(bare, train.images, train.labels, optimizer, scheduler, config.batch_size,
                                     mean, std, device, config))
    label = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print(f"training loop overhead on {label}, torch {torch.__version__}: {config.model} width {config.width}, "
          f"{config.image_size}px, batch {config.batch_size}, {len(train)} images, {args.rounds} rounds alternated")
    print(f"{'loop':<22}{'median img/s':>14}{'min':>10}{'max':>10}")
    for name, rates in (("resweep train_one_epoch", ours_rates), ("bare PyTorch loop", bare_rates)):
        print(f"{name:<22}{np.median(rates):>14.0f}{min(rates):>10.0f}{max(rates):>10.0f}")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(f"ratio={np.median(ours_rates) / np.median(bare_rates):.3f}")


if __name__ == "__main__":
    main()
