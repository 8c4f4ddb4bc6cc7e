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


CARVED = "val and a 10% test carved (stratified, seeded)"
VAL_FROM_TRAIN = "official train/test, val carved from train"

DATASETS = (
    DatasetInfo("digits", "scikit-learn handwritten digits (offline)", 10, "8x8", 1, 16, "light", "70/10/20 fixed"),
    DatasetInfo("synthetic", "generated noise with a class-coloured square", 10, "any", 3, 32, "light",
                "generated, 70/10/20"),
    DatasetInfo("mnist", "MNIST handwritten digits", 10, "28x28", 1, 28, "light", VAL_FROM_TRAIN),
    DatasetInfo("fashionmnist", "Fashion-MNIST clothing", 10, "28x28", 1, 28, "light", VAL_FROM_TRAIN),
    DatasetInfo("kmnist", "Kuzushiji-MNIST cursive Japanese", 10, "28x28", 1, 28, "light", VAL_FROM_TRAIN),
    DatasetInfo("svhn", "Street View House Numbers (cropped digits)", 10, "32x32", 3, 32, "light", VAL_FROM_TRAIN),
    DatasetInfo("cifar10", "CIFAR-10", 10, "32x32", 3, 32, "cifar", VAL_FROM_TRAIN),
    DatasetInfo("cifar100", "CIFAR-100", 100, "32x32", 3, 32, "cifar", VAL_FROM_TRAIN),
    DatasetInfo("stl10", "STL-10 (labelled images)", 10, "96x96", 3, 96, "cifar", VAL_FROM_TRAIN),
    DatasetInfo("eurosat", "EuroSAT RGB satellite tiles", 10, "64x64", 3, 64, "cifar", CARVED),
    DatasetInfo("flowers102", "Oxford Flowers-102", 102, "~500x700", 3, 224, "imagenet", "official train/val/test"),
    DatasetInfo("flowers5", "Kaggle Flowers Recognition (5 classes)", 5, "~240x320", 3, 224, "imagenet", CARVED),
    DatasetInfo("pets", "Oxford-IIIT Pets (37 breeds)", 37, "~400x500", 3, 224, "imagenet", VAL_FROM_TRAIN),
    DatasetInfo("food101", "Food-101", 101, "up to 512", 3, 224, "imagenet", VAL_FROM_TRAIN),
    DatasetInfo("dtd", "Describable Textures (split 1)", 47, "300-640", 3, 224, "imagenet",
                "official train/val/test"),
    DatasetInfo("caltech101", "Caltech-101 (background class left out)", 101, "~300x200", 3, 224, "imagenet",
                CARVED),
    DatasetInfo("imagefolder", "your folder: class sub-folders, or train/val[/test] of them", 0, "any", 3, 224,
                "imagenet", "train/val[/test] folders, else carved"),
)
BY_NAME = {d.name: d for d in DATASETS}
