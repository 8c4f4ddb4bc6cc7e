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

from .config import TrainConfig


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
        """`n` images drawn at random, the same ones every time, in their original order. Not the
        first `n`: folders and many data sets are stored class by class, so the first `n` images
        can hold only a few of the classes."""
        if not 0 < n < len(self):
            return self
        chosen = torch.randperm(len(self), generator=torch.Generator().manual_seed(0))[:n].sort().values
        files = [self.files[i] for i in chosen.tolist()] if self.files else None
        return Split(self.images[chosen], self.labels[chosen], files)


@dataclass
class DataBundle:
    train: Split
    val: Split
    test: Split
    classes: list[str]
    mean: tuple[float, ...]  # per channel: three, or one for grayscale
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        """1 for grayscale sets (kept one channel), 3 for colour."""
        return int(self.train.images.shape[1])


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
            array = self.images[i].permute(1, 2, 0).numpy()
            picture = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)  # grayscale: mode L
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


# what an epoch iterates: the batch path, or the per-image PIL reference path
Loader = BatchLoader | PilLoader
