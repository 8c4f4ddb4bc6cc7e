"""What a trained model costs to run: parameters, FLOPs per image, and inference latency on
the trial's own device. A sweep ranks on accuracy; which model to ship is a trade of accuracy
against these, so every trial reports them with its first epoch (they do not depend on the
weights, so trials ASHA stops early have them too).

FLOPs come from PyTorch's own `torch.utils.flop_counter` (a multiply-add counts 2); latency
from `torch.utils.benchmark`'s Timer, which warms up, synchronises CUDA and takes the median
of as many repeats as fit in its time budget.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .config import TrainConfig

LATENCY_BATCH = 1  # ms per image as a service answering one request sees it
THROUGHPUT_BATCH = 64  # images/s as a batch job sees it

# Figures already measured in this process, by what they depend on (the model's structure, its
# input, memory format, device and precision; never its weights): a reused trial actor's next
# trial of the same architecture reports them again instead of spending a second or more on its
# timing (most sweeps search only the training, not the model).
_MEASURED: dict[tuple, dict[str, float]] = {}


def count_flops(model: nn.Module, image: torch.Tensor) -> float:
    """Forward FLOPs of one image ([1, C, H, W] on the model's device)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(image)
    return float(counter.get_total_flops())


def measure_cost(model: nn.Module, config: TrainConfig, channels: int, device: torch.device,
                 autocast=None, budget_s: float = 0.2) -> dict[str, float]:
    """params, gflops (per image at the config's image size), latency_ms (batch 1) and infer_img_s
    (batch 64) of `model` in eval mode on `device`, in the trial's precision (`autocast`: the
    training autocast context; fp32 on the CPU). The model's train/eval mode is restored.
    Measured once per architecture in a process (`_MEASURED`)."""
    from contextlib import nullcontext

    # torch.utils.benchmark imports cpp_extension, which logs a line about CUDA_HOME on machines
    # without a CUDA runtime: imported here, and quietly, so that the CLI's stderr stays clean
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils.benchmark import Timer

    key = (str(model), channels, config.image_size, config.channels_last, str(device),
           str(getattr(autocast, "fast_dtype", None)) if autocast is not None else None, budget_s)
    if key in _MEASURED:
        return dict(_MEASURED[key])
    was_training = model.training
    model.eval()
    size = config.image_size
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    one = torch.zeros(LATENCY_BATCH, channels, size, size, device=device).contiguous(memory_format=memory_format)
    batch = torch.zeros(THROUGHPUT_BATCH, channels, size, size, device=device).contiguous(memory_format=memory_format)
    context = autocast if (autocast is not None and device.type == "cuda") else nullcontext()

    def run(x: torch.Tensor) -> None:
        with torch.no_grad(), context:
            model(x)

    try:
        flops = count_flops(model, one[:1].float())
        seconds_one = Timer("run(x)", globals={"run": run, "x": one}).blocked_autorange(min_run_time=budget_s).median
        seconds_batch = Timer("run(x)", globals={"run": run, "x": batch}).blocked_autorange(
            min_run_time=budget_s).median
    finally:
        model.train(was_training)
    _MEASURED[key] = {"params": float(sum(p.numel() for p in model.parameters())), "gflops": flops / 1e9,
                      "latency_ms": seconds_one * 1e3 / LATENCY_BATCH, "infer_img_s": THROUGHPUT_BATCH / seconds_batch}
    return dict(_MEASURED[key])
