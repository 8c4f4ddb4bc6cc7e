"""Training-data throughput: the fast path (uint8 cache + batch augmentation on the device)
against the per-image PIL path (decode + torchvision transforms in DataLoader workers).

Two workloads: flowers-style JPEGs (500x375) to 224 crops with the `imagenet` preset, and
CIFAR-style 32x32 images with the `cifar` preset. Each is one pass over the training split,
with no model, so the figure is what the data path alone can feed. The cache build (once
per node) is timed apart. Ends with `ratio=<fast/pil>` for the flowers workload, the one a
GPU trial starves on.

    python benchmarks/data_pipeline.py [--images 600] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.augment import PilTrainTransform, TrainTransform  # noqa: E402
from trainer.config import from_dict  # noqa: E402
from trainer.data import BatchLoader, PilLoader  # noqa: E402
from trainer.datasets import load_data  # noqa: E402


def write_jpegs(root: Path, count: int, size: tuple[int, int], classes: int = 5) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        ys, xs = np.mgrid[0:size[1], 0:size[0]]
        waves = 80 * np.sin(xs / 17.0 + i)[..., None] + 40 * (ys / size[1])[..., None]
        picture = rng.integers(0, 255, 3) * 0.5 + waves
        Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8)).save(folder / f"{i}.jpg", quality=90)


def one_pass(loader, device: torch.device) -> float:
    """Images per second of one pass over `loader` (its batches landed on `device`)."""
    seen, start = 0, time.perf_counter()
    for _images, labels in loader:
        seen += len(labels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def measure(name: str, config, device: torch.device, workers: int) -> dict:
    start = time.perf_counter()
    data = load_data(config)
    build_s = time.perf_counter() - start
    gen = torch.Generator().manual_seed(0)
    fast = BatchLoader(data.train.to(device), config.batch_size,
                       TrainTransform(config.image_size, data.mean, data.std, config.augment, gen), shuffle=True,
                       generator=torch.Generator().manual_seed(0))
    pil = PilLoader(data.train, config.batch_size, PilTrainTransform(config.image_size, data.mean, data.std,
                                                                     config.augment), device, shuffle=True,
                    generator=torch.Generator().manual_seed(0), num_workers=workers)
    one_pass(fast, device)  # warm-up (kernels, page cache)
    one_pass(pil, device)
    fast_rates, pil_rates = [], []
    for _ in range(3):  # alternate, so that a noisy neighbour hurts both alike
        fast_rates.append(one_pass(fast, device))
        pil_rates.append(one_pass(pil, device))
    return {"workload": name, "images": len(data.train), "cache_build_s": build_s,
            "fast_img_s": float(np.median(fast_rates)), "pil_img_s": float(np.median(pil_rates))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600, help="flowers-style JPEGs to generate")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="PIL DataLoader workers")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        flowers = Path(tmp) / "flowers"
        write_jpegs(flowers, args.images, (500, 375))
        cifar = Path(tmp) / "cifar"
        write_jpegs(cifar, 4 * args.images, (32, 32), classes=10)
        for name, root, augment, size in (("flowers 224 (imagenet)", flowers, "imagenet", 224),
                                          ("cifar 32 (cifar)", cifar, "cifar", 32)):
            config = from_dict({"dataset": "imagefolder", "data_dir": str(root), "augment": augment,
                                "image_size": size, "batch_size": 64, "download": False})
            rows.append(measure(name, config, device, args.workers))
    label = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print(f"data path throughput on {label}, torch {torch.__version__}, PIL workers {args.workers}")
    print(f"{'workload':<24}{'train images':>13}{'cache build s':>15}{'fast img/s':>12}{'pil img/s':>11}"
          f"{'fast/pil':>10}")
    for r in rows:
        print(f"{r['workload']:<24}{r['images']:>13}{r['cache_build_s']:>15.1f}{r['fast_img_s']:>12.0f}"
              f"{r['pil_img_s']:>11.0f}{r['fast_img_s'] / r['pil_img_s']:>10.2f}")
    print(f"ratio={rows[0]['fast_img_s'] / rows[0]['pil_img_s']:.2f}")


if __name__ == "__main__":
    main()
