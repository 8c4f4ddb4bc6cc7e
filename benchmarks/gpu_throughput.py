"""Training throughput on a GPU through resweep's own trainer and data path: ResNet50 at 224
(imagenet augmentation) and ResNet9 at 32 (cifar augmentation), bf16 autocast +
channels_last against fp32, with the GPU's name and the fraction of its bf16 peak reached.
A ResNet50 training step costs about 3 x 8.2 GFLOP per 224 image (multiply and add counted
apart; "4.1 GMACs"). Public figures to compare: ResNet50 fp16 training ~2,470 img/s on one
A100 (NVIDIA DeepLearningExamples), ~2,600-2,800 img/s on one H100 SXM (Lambda).
Skips, with a message, where there is no CUDA. Ends with `ratio=<bf16 / fp32>` for ResNet50.

    python benchmarks/gpu_throughput.py [--images 4096] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.augment import TrainTransform  # noqa: E402
from trainer.config import from_dict  # noqa: E402
from trainer.data import BatchLoader  # noqa: E402
from trainer.datasets import load_data  # noqa: E402
from trainer.loop import Phase, train_one_epoch  # noqa: E402
from trainer.models import build_model  # noqa: E402

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets.
BF16_PEAK = {"H200": 989, "H100": 989, "A100": 312, "L40S": 362, "L4": 121, "A10G": 70, "A10": 125,
             "RTX 4090": 165, "V100": 125}


def peak_tflops(name: str) -> float | None:
    for key, value in BF16_PEAK.items():
        if key in name:
            return float(value)
    return None


def forward_gflops(model, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
    return counter.get_total_flops() / 1e9


def measure(model_name: str, size: int, augment: str, batch: int, images: int, precision: str, rounds: int):
    config = from_dict({"dataset": "synthetic", "synthetic_samples": int(images / 0.7) + 10,
                        "synthetic_classes": 100, "image_size": size, "augment": augment, "model": model_name,
                        "width": 64, "batch_size": batch, "epochs": 10, "optimizer": "sgd", "lr": 0.1,
                        "scheduler": "onecycle", "device": "cuda", "precision": precision,
                        "channels_last": precision == "bf16"})
    device = torch.device("cuda")
    data = load_data(config)
    model = build_model(config, data.num_classes, data.channels).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    gflops = forward_gflops(model, size)
    loader = BatchLoader(data.train.to(device), batch, TrainTransform(size, data.mean, data.std, augment,
                                                                      torch.Generator().manual_seed(0)),
                         shuffle=True, generator=torch.Generator().manual_seed(0))
    phase = Phase(1, config, model, len(loader))
    train_one_epoch(model, loader, phase, config, device)  # warm-up: cuDNN autotune, allocator
    torch.cuda.reset_peak_memory_stats()
    rates = [train_one_epoch(model, loader, phase, config, device)["images_per_s"] for _ in range(rounds)]
    return {"rate": float(np.median(rates)), "gflops": gflops,
            "memory_gib": torch.cuda.max_memory_allocated() / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4096, help="training images per epoch")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("skipped: no CUDA GPU here (this benchmark measures GPU training throughput)")
        print("ratio=nan")
        return
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name()
    peak = peak_tflops(name)
    print(f"training throughput on {name} (bf16 peak {peak or '?'} TFLOP/s), torch {torch.__version__}")
    print(f"{'workload':<22}{'precision':>10}{'img/s':>9}{'TFLOP/s':>9}{'% of peak':>10}{'GPU mem GiB':>12}")
    ratios = {}
    for model_name, size, augment, batch in (("resnet50", 224, "imagenet", 256), ("resnet9", 32, "cifar", 512)):
        rates = {}
        for precision in ("bf16", "fp32"):
            r = measure(model_name, size, augment, batch, args.images, precision, args.rounds)
            rates[precision] = r["rate"]
            tflops = r["rate"] * 3 * r["gflops"] / 1e3
            share = f"{100 * tflops / peak:.1f}" if peak else "?"
            print(f"{model_name + f' @ {size}':<22}{precision:>10}{r['rate']:>9.0f}{tflops:>9.1f}{share:>10}"
                  f"{r['memory_gib']:>12.1f}")
        ratios[model_name] = rates["bf16"] / rates["fp32"]
    print("reference: ResNet50 fp16 training ~2,470 img/s on one A100, ~2,600-2,800 img/s on one H100 SXM")
    print(f"ratio={ratios['resnet50']:.2f}")


if __name__ == "__main__":
    main()
