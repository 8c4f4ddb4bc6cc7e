"""Datasets as uint8 tensors, and the batch loader of the fast path.

Every dataset loads into a `DataBundle`: train/val/test `Split`s of uint8 images
[N, 3, S, S] at the preset's storage size plus labels, class names and the normalisation
statistics. `BatchLoader` then serves batches straight from those tensors on the training
device, and the augmentation runs on whole batches there (trainer.augment).

The registry `LOADERS` maps each dataset name to its loader; `load_data(config)` is the one
entry point.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .augment import storage_size
from .config import TrainConfig


class DataError(RuntimeError):
    """Data is missing or unreadable; the message is one line naming the path and the fix."""


@dataclass
class Split:
    images: torch.Tensor  # uint8 [N, 3, S, S]
    labels: torch.Tensor  # int64 [N]
    files: list[str] | None = None  # the image files, where the data set has them (for the PIL path)

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device), self.files)

    def take(self, n: int) -> Split:
        if not 0 < n < len(self):
            return self
        return Split(self.images[:n], self.labels[:n], self.files[:n] if self.files else None)


@dataclass
class DataBundle:
    train: Split
    val: Split
    test: Split
    classes: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def data_root(config: TrainConfig) -> Path:
    """--data-dir, else $RESWEEP_DATA, else ~/.cache/resweep/data."""
    if config.data_dir:
        return Path(config.data_dir).expanduser()
    if os.environ.get("RESWEEP_DATA"):
        return Path(os.environ["RESWEEP_DATA"]).expanduser()
    return Path.home() / ".cache" / "resweep" / "data"


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Index arrays, the rest first, then one per fraction; each split stratified by label."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        rng.shuffle(idx)
        start = 0
        for k, fraction in enumerate(fractions, start=1):
            n = int(round(len(idx) * fraction))
            if n == 0 and fraction > 0 and len(idx) > len(fractions):
                n = 1  # a small class still shows up in every split
            parts[k].extend(idx[start:start + n])
            start += n
        parts[0].extend(idx[start:])
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.float() / 255
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp(min=1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    x = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False,
                      antialias=images.shape[-1] > size)
    return x.round().clamp(0, 255).to(torch.uint8)


def load_digits(config: TrainConfig) -> DataBundle:
    """scikit-learn's 1,797 handwritten 8x8 digits, upscaled to RGB; fixed stratified 70/10/20 split."""
    from sklearn.datasets import load_digits as sk_digits

    digits = sk_digits()
    images = torch.from_numpy((digits.images * (255 / 16)).round().astype(np.uint8)).unsqueeze(1)
    images = resize_uint8(images, storage_size(config.augment, config.image_size)).expand(-1, 3, -1, -1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train, val, test = stratified_split(digits.target, (0.1, 0.2), seed=0)
    bundle_images = images.contiguous()
    mean, std = channel_stats(bundle_images[train])
    return DataBundle(Split(bundle_images[train], labels[train]), Split(bundle_images[val], labels[val]),
                      Split(bundle_images[test], labels[test]), [str(d) for d in range(10)], mean, std)


def synthetic_images(n: int, size: int, classes: int, region: str,
                     seed: int = 1234) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images with a class-coloured square: the class signal lives only in `region`.

    The square (a quarter of the side) is placed in the image centre, the top-left or
    bottom-right quadrant, or anywhere; its colour and stripe pattern tell the class."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    labels = labels[torch.randperm(n, generator=g)]
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    palette = torch.randint(30, 226, (classes, 3), generator=g)
    side = max(2, size // 4)
    stripes = (torch.arange(side) % 2).view(1, side) * torch.ones(side, 1, dtype=torch.long)
    lo, hi = {"center": (size // 2 - side // 2, size // 2 - side // 2), "top_left": (0, size // 2 - side),
              "bottom_right": (size // 2, size - side), "anywhere": (0, size - side)}[region]
    top = torch.randint(lo, hi + 1, (n,), generator=g)
    left = torch.randint(lo, hi + 1, (n,), generator=g)
    for i in range(n):
        k = int(labels[i])
        pattern = stripes if k % 2 else stripes.T  # odd classes vertical, even horizontal stripes
        patch = palette[k].view(3, 1, 1) * (0.6 + 0.4 * pattern)
        images[i, :, top[i]:top[i] + side, left[i]:left[i] + side] = patch.to(torch.uint8)
    return images, labels


def load_synthetic(config: TrainConfig) -> DataBundle:
    images, labels = synthetic_images(config.synthetic_samples, storage_size(config.augment, config.image_size),
                                      config.synthetic_classes, config.synthetic_region)
    train, val, test = stratified_split(labels.numpy(), (0.15, 0.15), seed=0)
    mean, std = channel_stats(images[train])
    return DataBundle(Split(images[train], labels[train]), Split(images[val], labels[val]),
                      Split(images[test], labels[test]), [f"class_{k}" for k in range(config.synthetic_classes)],
                      mean, std)


LOADERS: dict[str, Callable[[TrainConfig], DataBundle]] = {
    "digits": load_digits,
    "synthetic": load_synthetic,
}


DATA_KEYS = ("dataset", "data_dir", "download", "image_size", "augment", "val_fraction", "max_train_samples",
             "synthetic_classes", "synthetic_samples", "synthetic_region")


def data_key(config: TrainConfig) -> tuple:
    """The config values a loaded dataset depends on: runs that agree on these can share one."""
    return tuple(getattr(config, k) for k in DATA_KEYS)


def load_data(config: TrainConfig) -> DataBundle:
    from .datasets import FILE_LOADERS  # the file data sets build on this module

    loaders = {**LOADERS, **FILE_LOADERS}
    if config.dataset not in loaders:
        raise DataError(f"dataset {config.dataset!r} has no loader; available: {', '.join(loaders)}")
    bundle = loaders[config.dataset](config)
    if config.max_train_samples:
        bundle.train = bundle.train.take(config.max_train_samples)
    return bundle


class BatchLoader:
    """Batches of (images, labels) from a `Split` already on the device.

    `transform` turns the uint8 batch into the model's float input. With `shuffle`, each
    epoch's order comes from `generator`; the last incomplete batch is then dropped when a
    full one exists (batch norm needs more than one image)."""

    def __init__(self, split: Split, batch_size: int, transform: Callable[[torch.Tensor], torch.Tensor],
                 shuffle: bool = False, generator: torch.Generator | None = None):
        self.split = split
        self.batch_size = batch_size
        self.transform = transform
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self) -> int:
        n = len(self.split)
        if self.shuffle and n > self.batch_size:
            return n // self.batch_size
        return -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.split)
        device = self.split.images.device
        order = torch.randperm(n, generator=self.generator).to(device) if self.shuffle else None
        for b in range(len(self)):
            if order is None:
                images = self.split.images[b * self.batch_size:(b + 1) * self.batch_size]
                labels = self.split.labels[b * self.batch_size:(b + 1) * self.batch_size]
            else:
                idx = order[b * self.batch_size:(b + 1) * self.batch_size]
                images, labels = self.split.images[idx], self.split.labels[idx]
            yield self.transform(images), labels


class _PilDataset(torch.utils.data.Dataset):
    def __init__(self, split: Split, transform: Callable):
        self.images, self.labels, self.files = split.images.cpu(), split.labels.cpu(), split.files
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        if self.files:  # decode the file every time, as a plain per-image pipeline does
            with Image.open(self.files[i]) as image:
                picture = image.convert("RGB")
        else:
            picture = Image.fromarray(self.images[i].permute(1, 2, 0).numpy())
        return self.transform(picture), self.labels[i]


class PilLoader:
    """The reference path (`data_path=pil`): per-image PIL decode and transforms in DataLoader
    workers, as torchvision's reference scripts do; the fast path is measured against it."""

    def __init__(self, split: Split, batch_size: int, transform: Callable, device: torch.device,
                 shuffle: bool = False, generator: torch.Generator | None = None, num_workers: int = 2):
        self.split = Split(split.images[:0], split.labels.cpu(), split.files)
        self.device = device
        self.loader = torch.utils.data.DataLoader(
            _PilDataset(split, transform), batch_size=batch_size, shuffle=shuffle, generator=generator,
            num_workers=num_workers, drop_last=shuffle and len(split) > batch_size,
            pin_memory=device.type == "cuda", persistent_workers=num_workers > 0)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in self.loader:
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
