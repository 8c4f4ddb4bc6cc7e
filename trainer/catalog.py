"""What each data set by name is: its classes, image size and channels, where its splits come
from, and the training settings that suit it. `sweep datasets` prints this table and the README
holds it; a test checks that every loader of trainer.datasets has a row. Imports nothing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    name: str  # the config's `dataset`
    title: str
    classes: int  # 0: as many as the folder has
    native: str  # the images' own size
    channels: int  # 1: grayscale, kept one channel for from-scratch models (ImageNet ones repeat it)
    image_size: int  # a sensible `image_size` to train at
    augment: str  # the augmentation preset that suits it (no flips for digits: a flipped 2 is no 2)
    splits: str  # where train / validation / test come from
    images: tuple[int, int, int]  # the set's own (train, val, test) counts; 0: carved (see `split_sizes`)


CARVED = "val and a 10% test carved (stratified, seeded)"
VAL_FROM_TRAIN = "official train/test, val carved from train"
FIXED = "70/10/20 fixed"
TEST_FRACTION = 0.1  # of a pool that has no test split of its own (CARVED)
HELD_OUT = {"digits": (0.1, 0.2), "synthetic": (0.15, 0.15)}  # (val, test) of one pool, whatever val_fraction says

DATASETS = (
    DatasetInfo("digits", "scikit-learn handwritten digits (offline)", 10, "8x8", 1, 16, "light", FIXED,
                (1797, 0, 0)),
    DatasetInfo("synthetic", "generated noise with a class-coloured square", 10, "any", 3, 32, "light",
                "generated, 70/15/15", (0, 0, 0)),  # `synthetic_samples` of them,
    DatasetInfo("mnist", "MNIST handwritten digits", 10, "28x28", 1, 28, "light", VAL_FROM_TRAIN,
                (60000, 0, 10000)),
    DatasetInfo("fashionmnist", "Fashion-MNIST clothing", 10, "28x28", 1, 28, "light", VAL_FROM_TRAIN,
                (60000, 0, 10000)),
    DatasetInfo("kmnist", "Kuzushiji-MNIST cursive Japanese", 10, "28x28", 1, 28, "light", VAL_FROM_TRAIN,
                (60000, 0, 10000)),
    DatasetInfo("svhn", "Street View House Numbers (cropped digits)", 10, "32x32", 3, 32, "light", VAL_FROM_TRAIN,
                (73257, 0, 26032)),
    DatasetInfo("cifar10", "CIFAR-10", 10, "32x32", 3, 32, "cifar", VAL_FROM_TRAIN, (50000, 0, 10000)),
    DatasetInfo("cifar100", "CIFAR-100", 100, "32x32", 3, 32, "cifar", VAL_FROM_TRAIN, (50000, 0, 10000)),
    DatasetInfo("stl10", "STL-10 (labelled images)", 10, "96x96", 3, 96, "cifar", VAL_FROM_TRAIN, (5000, 0, 8000)),
    DatasetInfo("eurosat", "EuroSAT RGB satellite tiles", 10, "64x64", 3, 64, "cifar", CARVED, (27000, 0, 0)),
    DatasetInfo("flowers102", "Oxford Flowers-102", 102, "~500x700", 3, 224, "imagenet", "official train/val/test",
                (1020, 1020, 6149)),
    DatasetInfo("flowers5", "Kaggle Flowers Recognition (5 classes)", 5, "~240x320", 3, 224, "imagenet", CARVED,
                (4317, 0, 0)),
    DatasetInfo("pets", "Oxford-IIIT Pets (37 breeds)", 37, "~400x500", 3, 224, "imagenet", VAL_FROM_TRAIN,
                (3680, 0, 3669)),
    DatasetInfo("food101", "Food-101", 101, "up to 512", 3, 224, "imagenet", VAL_FROM_TRAIN,
                (75750, 0, 25250)),
    DatasetInfo("dtd", "Describable Textures (split 1)", 47, "300-640", 3, 224, "imagenet",
                "official train/val/test", (1880, 1880, 1880)),
    DatasetInfo("caltech101", "Caltech-101 (background class left out)", 101, "~300x200", 3, 224, "imagenet",
                CARVED, (8677, 0, 0)),
    DatasetInfo("imagefolder", "your folder: class sub-folders, or train/val[/test] of them", 0, "any", 3, 224,
                "imagenet", "train/val[/test] folders, else carved", (0, 0, 0)),  # counted: `count_images`,
)
BY_NAME = {d.name: d for d in DATASETS}


def split_sizes(info: DatasetInfo, val_fraction: float,
                counts: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    """(train, val, test) images of `info` as its loader splits them (trainer.datasets), before
    `max_train_samples`. `counts` stand for the set's own where it has none: a synthetic set's
    (samples, 0, 0), a folder's as listed (`trainer.datasets.count_images`); a 0 is carved."""
    train, val, test = counts or info.images
    if info.name in HELD_OUT:
        val_share, test_share = HELD_OUT[info.name]
        val, test = round(train * val_share), round(train * test_share)
        return train - val - test, val, test
    if not test:  # carved: a 10% test, then val from the rest
        test = round(train * TEST_FRACTION)
        train -= test
    if not val:
        val = round(train * val_fraction)
        train -= val
    return train, val, test
