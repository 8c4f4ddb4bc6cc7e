"""The training step on the CPU, side by side: memory format (NCHW against channels_last),
the optimizer's step (for-loop, foreach, fused) and the evaluation batch, each against the
setting the trainer used before, in interleaved rounds with one thread (what a 1-CPU trial
gets). Prints the median time of each and its speed-up over the baseline, then `ratio=` of the
trainer's setting over the baseline (median over the cases); BENCHMARKS.md records the figures.

    python benchmarks/cpu_step.py [--rounds 5] [--steps 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.config import from_dict  # noqa: E402
from trainer.models import build_model  # noqa: E402

# model, width, image side, channels: the quickstart's ResNet9, the ResNet9 at 28 px, a CIFAR ResNet-18
CASES = [("resnet9", 16, 16, 1), ("resnet9", 16, 28, 3), ("resnet9", 32, 32, 3)]
CHOSEN = "train channels_last, SGD for-loop"  # what the trainer does on the CPU; the last line's ratio


def step_time(model, images, labels, optimizer, steps: int) -> float:
    """Seconds per training step (forward, backward, optimizer step), after one warm-up step."""
    model.train()
    for i in range(steps + 1):
        if i == 1:
            start = time.perf_counter()
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


@torch.no_grad()
def eval_time(model, images, batch: int) -> float:
    """Seconds per image to evaluate `images` in batches of `batch`."""
    model.eval()
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        model(images[i:i + batch])
    return (time.perf_counter() - start) / len(images)


def variants(model_name: str, width: int, side: int, channels: int, batch: int):
    """name -> a function returning seconds per step (or per evaluated image) for that setting."""
    config = from_dict({"model": model_name, "width": width})
    torch.manual_seed(0)
    images = torch.randn(batch, channels, side, side)
    labels = torch.randint(0, 10, (batch,))
    evaluation = torch.randn(1024, channels, side, side)

    def train_with(memory_format, **optimizer_kwargs):
        def run(steps):
            torch.manual_seed(0)
            model = build_model(config, 10, channels).to(memory_format=memory_format)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, **optimizer_kwargs)
            return step_time(model, images.contiguous(memory_format=memory_format), labels, optimizer, steps)
        return run

    def evaluate_with(eval_batch, memory_format):
        def run(steps):
            model = build_model(config, 10, channels).to(memory_format=memory_format)
            return eval_time(model, evaluation.contiguous(memory_format=memory_format), eval_batch)
        return run

    nchw, nhwc = torch.contiguous_format, torch.channels_last
    return {
        "train NCHW, SGD for-loop (before)": train_with(nchw, foreach=False),
        "train NCHW, SGD foreach": train_with(nchw, foreach=True),
        "train channels_last, SGD for-loop": train_with(nhwc, foreach=False),
        "train channels_last, SGD foreach": train_with(nhwc, foreach=True),
        "train channels_last, SGD fused": train_with(nhwc, fused=True),
        "eval NCHW, batch 256 (before)": evaluate_with(256, nchw),
        "eval channels_last, batch 256": evaluate_with(256, nhwc),
        "eval channels_last, batch 1024": evaluate_with(1024, nhwc),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--smoke-test", action="store_true", help="one round of two steps, one case")
    args = parser.parse_args()
    if args.smoke_test:
        args.rounds, args.steps, args.batch = 1, 2, 16
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
          f"batch {args.batch}, {args.rounds} interleaved rounds of {args.steps} steps")
    chosen = []  # the trainer's setting (channels_last, foreach) against before, per case
    for model_name, width, side, channels in CASES[:1] if args.smoke_test else CASES:
        runs = variants(model_name, width, side, channels, args.batch)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                try:
                    times[name].append(run(args.steps))
                except (RuntimeError, TypeError) as err:  # fused SGD needs a newer torch on the CPU
                    times[name].append(float("nan"))
                    print(f"  {name}: not available ({str(err).splitlines()[0][:80]})")
        print(f"\n{model_name} width {width}, {side}x{side}x{channels}")
        base = {"train": None, "eval": None}
        for name, values in times.items():
            median = statistics.median(values)
            kind = name.split()[0]
            base[kind] = base[kind] or median
            unit = "ms/step" if kind == "train" else "us/image"
            scale = 1e3 if kind == "train" else 1e6
            print(f"  {name:<38}{median * scale:>10.2f} {unit:<9}  {base[kind] / median:.2f}x")
            if name == CHOSEN:
                chosen.append(base[kind] / median)
    print(f"ratio={statistics.median(chosen):.2f}")


if __name__ == "__main__":
    main()
