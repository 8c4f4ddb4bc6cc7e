"""The data sets by name (`load_data`), decoded once into a uint8 tensor cache.

- digits: scikit-learn's handwritten digits (ships with the package; the offline default).
- synthetic: generated noise images with a class-coloured square (tests and benchmarks).
- flowers102: torchvision's Flowers102 with its official train/val/test splits.
- flowers5: the Kaggle "Flowers Recognition" folder (daisy, dandelion, rose, sunflower,
  tulip); a seeded stratified 10% test split is carved out, the rest split 90/10 into
  train/val as project 001 does.
- cifar10 / cifar100: torchvision's CIFAR; a seeded stratified validation hold-out from the
  training set, the official test set.
- imagefolder: class sub-folders of images, or train/val[/test] folders of them.
- mnist / fashionmnist / kmnist, svhn, stl10, eurosat, pets, food101, dtd, caltech101: the
  standard sets, through torchvision's own classes; trainer.catalog lists their sizes,
  splits and the settings that suit them. Grayscale sets stay one channel.

Images are decoded (in threads) to the preset's storage size — short side resized, center
square cropped — and saved as one file per split under `<data root>/.resweep-cache/`,
written atomically under a file lock so that trials starting together on a node build it
once; later loads memory-map it. Unreadable images are skipped with one warning.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock
from PIL import Image

from .augment import storage_size
from .config import TrainConfig
from .data import DataBundle, Split, channel_stats, data_root, resize_uint8, stratified_split
from .errors import DataError
from .files import atomic_write_bytes

log = logging.getLogger("resweep.data")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
FLOWERS5_CLASSES = ["daisy", "dandelion", "rose", "sunflower", "tulip"]
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CIFAR_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def decode(path: str | Path, size: int, channels: int = 3) -> np.ndarray | None:
    """An image file as uint8 [channels, size, size] (short side resized, center crop; 1 channel:
    grayscale), None if unreadable."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB" if channels == 3 else "L")
            w, h = image.size
            scale = size / min(w, h)
            image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                                 Image.Resampling.BILINEAR, reducing_gap=None)
            w, h = image.size
            left, top = (w - size) // 2, (h - size) // 2
            image = image.crop((left, top, left + size, top + size))
            array = np.asarray(image, dtype=np.uint8)
            return (array[None] if array.ndim == 2 else array.transpose(2, 0, 1)).copy()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def cache_dir(config: TrainConfig) -> Path:
    return data_root(config) / ".resweep-cache"


def cached(path: Path, build: Callable[[], tuple[torch.Tensor, torch.Tensor, list[str]]]) -> Split:
    """The split stored at `path`, built by `build()` once (under a lock), then memory-mapped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            log.info(f"building the data cache {path.name}")
            images, labels, files = build()
            atomic_write_bytes(path, lambda f: torch.save({"images": images.contiguous(), "labels": labels,
                                                           "files": files}, f))
    state = torch.load(path, mmap=True, weights_only=True)
    return Split(state["images"], state["labels"], files=list(state["files"]))


def decode_files(name: str, items: list[tuple[str, int]], size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode every (path, label); unreadable files are skipped with one warning naming a few."""
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        arrays = list(pool.map(lambda item: decode(item[0], size), items))
    bad = [path for (path, _), array in zip(items, arrays) if array is None]
    if bad:
        shown = ", ".join(Path(p).name for p in bad[:3])
        log.warning(f"{name}: skipped {len(bad)} unreadable image{'s' if len(bad) > 1 else ''} ({shown}"
                    f"{', ...' if len(bad) > 3 else ''}); delete or replace them to use them")
    kept = [(item, array) for item, array in zip(items, arrays) if array is not None]
    if not kept:
        raise DataError(f"{name}: none of the {len(items)} images could be read")
    images = torch.from_numpy(np.stack([a for _, a in kept]))
    labels = torch.tensor([label for (_, label), _ in kept], dtype=torch.int64)
    return images, labels, [path for (path, _), _ in kept]


def _key(*parts) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:12]


def files_split(config: TrainConfig, name: str, split: str, items: list[tuple[str, int]]) -> Split:
    size = storage_size(config.augment, config.image_size)
    listing = [(p, label, os.path.getsize(p)) for p, label in items]
    path = cache_dir(config) / f"{name}-{split}-{size}px-{_key(listing)}.pt"
    return cached(path, lambda: decode_files(f"{name} {split}", items, size))


def _missing(name: str, looked: Path, how: str) -> DataError:
    return DataError(f"{name}: no data at {looked}; {how}")


def load_flowers102(config: TrainConfig) -> DataBundle:
    import torchvision

    root = data_root(config)
    splits = {}
    for split in ("train", "val", "test"):
        try:
            ds = torchvision.datasets.Flowers102(str(root), split=split, download=config.download)
        except (RuntimeError, OSError) as err:  # not found, or the download failed (no network)
            reason = "download failed" if config.download else "download is off"
            raise _missing("flowers102", root / "flowers-102",
                           f"{reason} ({type(err).__name__}); put jpg/, imagelabels.mat and setid.mat from "
                           f"https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ in {root / 'flowers-102'} "
                           f"or pass --data-dir") from None
        items = [(str(f), int(label)) for f, label in zip(ds._image_files, ds._labels)]
        splits[split] = files_split(config, "flowers102", split, items)
    classes = list(getattr(torchvision.datasets.Flowers102, "classes", [])) or [str(i) for i in range(102)]
    return DataBundle(splits["train"], splits["val"], splits["test"], classes, *IMAGENET_STATS)


def _class_folders(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _images_of(folder: Path, classes: list[str]) -> list[tuple[str, int]]:
    items = []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                items.append((str(path), label))
    return items


def _carved(config: TrainConfig, name: str, items: list[tuple[str, int]], classes: list[str]) -> DataBundle:
    """train/val/test from one pool: a stratified 10% test split, the rest split by val_fraction."""
    labels = np.array([label for _, label in items])
    rest, test = stratified_split(labels, (0.1,), seed=0)
    train_idx, val_idx = stratified_split(labels[rest], (config.val_fraction,), seed=0)
    train_idx, val_idx = rest[train_idx], rest[val_idx]
    pick = lambda idx: [items[i] for i in idx]  # noqa: E731
    splits = {s: files_split(config, name, s, pick(idx))
              for s, idx in (("train", train_idx), ("val", val_idx), ("test", test))}
    return DataBundle(splits["train"], splits["val"], splits["test"], classes, *IMAGENET_STATS)


def load_flowers5(config: TrainConfig) -> DataBundle:
    root = data_root(config)
    for folder in (root, root / "flowers", root / "flowers-recognition", root / "flowers5"):
        if folder.is_dir() and all((folder / c).is_dir() for c in FLOWERS5_CLASSES):
            items = _images_of(folder, FLOWERS5_CLASSES)
            if items:
                return _carved(config, "flowers5", items, FLOWERS5_CLASSES)
    raise _missing("flowers5", root, "download the Kaggle 'Flowers Recognition' data set (kaggle datasets download "
                   "alxmamaev/flowers-recognition), unzip it and pass --data-dir to the folder holding "
                   + "/".join(FLOWERS5_CLASSES))


def load_imagefolder(config: TrainConfig) -> DataBundle:
    root = data_root(config)
    if not root.is_dir():
        raise _missing("imagefolder", root, "pass --data-dir to a folder of class sub-folders of images")
    if (root / "train").is_dir():
        classes = _class_folders(root / "train")
        given = {s: _images_of(root / s, classes) for s in ("train", "val", "test") if (root / s).is_dir()}
        train_items = given["train"]
        labels = np.array([label for _, label in train_items])
        if "test" not in given:
            keep, test = stratified_split(labels, (0.1,), seed=0)
            given["test"] = [train_items[i] for i in test]
            train_items, labels = [train_items[i] for i in keep], labels[keep]
        if "val" not in given:
            keep, val = stratified_split(labels, (config.val_fraction,), seed=0)
            given["val"] = [train_items[i] for i in val]
            train_items = [train_items[i] for i in keep]
        given["train"] = train_items
        splits = {s: files_split(config, "imagefolder", s, given[s]) for s in ("train", "val", "test")}
        data = DataBundle(splits["train"], splits["val"], splits["test"], classes, *IMAGENET_STATS)
    else:
        classes = _class_folders(root)
        items = _images_of(root, classes)
        if not items:
            raise _missing("imagefolder", root, "it holds no class sub-folders of images; pass --data-dir to one")
        data = _carved(config, "imagefolder", items, classes)
    data.mean, data.std = channel_stats(data.train.images[:2000])
    return data



def count_images(config: TrainConfig) -> tuple[int, int, int] | None:
    """(train, val, test) images of an image folder as `load_imagefolder` splits it, from a
    listing alone (no image is opened); None where there is no folder to count."""
    from .catalog import BY_NAME, split_sizes

    root = data_root(config)
    if not root.is_dir():
        return None
    if (root / "train").is_dir():
        classes = _class_folders(root / "train")
        counts = [len(_images_of(root / s, classes)) if (root / s).is_dir() else 0 for s in ("train", "val", "test")]
    else:
        counts = [len(_images_of(root, _class_folders(root))), 0, 0]
    return split_sizes(BY_NAME["imagefolder"], config.val_fraction, (counts[0], counts[1], counts[2]))

def _cifar(config: TrainConfig, name: str) -> DataBundle:
    import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    root = data_root(config)
    size = storage_size(config.augment, config.image_size)

    def read(train: bool):
        try:
            ds = cls(str(root), train=train, download=config.download)
        except (RuntimeError, OSError) as err:
            reason = "download failed" if config.download else "download is off"
            raise _missing(name, root / cls.base_folder,
                           f"{reason} ({type(err).__name__}); put the python version from "
                           f"https://www.cs.toronto.edu/~kriz/cifar.html, unpacked, in {root} "
                           f"or pass --data-dir") from None
        return ds

    def build(train: bool):
        ds = read(train)
        images = resize_uint8(torch.from_numpy(ds.data).permute(0, 3, 1, 2), size)
        return images, torch.tensor(ds.targets, dtype=torch.int64), []

    tag = _key(str(root.resolve()), name)
    full = cached(cache_dir(config) / f"{name}-trainval-{size}px-{tag}.pt", lambda: build(True))
    test = cached(cache_dir(config) / f"{name}-test-{size}px-{tag}.pt", lambda: build(False))
    train_idx, val_idx = (torch.from_numpy(i) for i in stratified_split(full.labels.numpy(), (config.val_fraction,),
                                                                         seed=0))
    classes = list(read(False).classes)
    return DataBundle(Split(full.images[train_idx], full.labels[train_idx]),
                      Split(full.images[val_idx], full.labels[val_idx]), test, classes, *CIFAR_STATS)


def load_cifar10(config: TrainConfig) -> DataBundle:
    return _cifar(config, "cifar10")


def load_cifar100(config: TrainConfig) -> DataBundle:
    return _cifar(config, "cifar100")


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (images [1797, 8, 8] of 0-16, targets), read from the file scikit-learn
    ships (its `load_digits` reads the same one) without importing scikit-learn: that import costs
    about 3 s of CPU in every process that loads the set (each trial actor, each driver), where
    the file takes a few hundredths of a second. scikit-learn's own loader where the file moved."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits as sk_digits

    digits = sk_digits()
    return digits.images, digits.target


def load_digits(config: TrainConfig) -> DataBundle:
    """scikit-learn's 1,797 handwritten 8x8 digits, upscaled, one channel; fixed stratified 70/10/20 split."""
    pixels, target = digits_arrays()
    images = torch.from_numpy((pixels * (255 / 16)).round().astype(np.uint8)).unsqueeze(1)
    images = resize_uint8(images, storage_size(config.augment, config.image_size))  # grayscale: one channel
    labels = torch.from_numpy(target.astype(np.int64))
    train, val, test = stratified_split(target, (0.1, 0.2), seed=0)
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


# --- The standard sets by name, through torchvision's own dataset classes: their download
# where the network allows, their on-disk layout where it does not. Each is decoded once into
# the same uint8 cache as the seeds' sets.


def _torchvision_set(name: str, cls_name: str, folder: Path, config: TrainConfig, files: str, url: str, **kwargs):
    """torchvision's `cls_name` dataset in `folder`; a missing or incomplete one is one line
    naming the folder, the files expected and where to get them."""
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    try:
        return cls(str(folder), download=config.download, **kwargs)
    except (RuntimeError, OSError, ValueError) as err:  # not there, incomplete, or the download failed
        reason = "download failed" if config.download else "download is off"
        raise _missing(name, folder, f"{reason} ({type(err).__name__}); expected {files} from {url} "
                                     f"there, or pass --data-dir to the folder above it") from None


def _official_val(config: TrainConfig, name: str, items: list[tuple[str, int]]) -> tuple[list, list]:
    """A validation split carved (stratified, `val_fraction`) from a set's official training split."""
    labels = np.array([label for _, label in items])
    train_idx, val_idx = stratified_split(labels, (config.val_fraction,), seed=0)
    return [items[i] for i in train_idx], [items[i] for i in val_idx]


def _files_bundle(config: TrainConfig, name: str, train: list, test: list, classes: list[str],
                  val: list | None = None) -> DataBundle:
    """Image files of the official splits (a validation split carved from train where the set
    has none), decoded into the cache."""
    if val is None:
        train, val = _official_val(config, name, train)
    splits = {s: files_split(config, name, s, items) for s, items in (("train", train), ("val", val), ("test", test))}
    return DataBundle(splits["train"], splits["val"], splits["test"], list(classes), *IMAGENET_STATS)


def _tensor_bundle(config: TrainConfig, name: str, build: Callable[[str], tuple[np.ndarray, np.ndarray]],
                   classes: list[str], source: str) -> DataBundle:
    """A set whose official train and test splits are arrays ([N, C, H, W] uint8 images, labels):
    resized once into the cache, a validation split carved from train."""
    size = storage_size(config.augment, config.image_size)

    def split(which: str):
        images, labels = build(which)
        return resize_uint8(torch.from_numpy(np.ascontiguousarray(images)), size), \
            torch.from_numpy(labels.astype(np.int64)), []

    tag = _key(source, name)
    full = cached(cache_dir(config) / f"{name}-train-{size}px-{tag}.pt", lambda: split("train"))
    test = cached(cache_dir(config) / f"{name}-test-{size}px-{tag}.pt", lambda: split("test"))
    train_idx, val_idx = (torch.from_numpy(i) for i in stratified_split(full.labels.numpy(), (config.val_fraction,),
                                                                         seed=0))
    data = DataBundle(Split(full.images[train_idx], full.labels[train_idx]),
                      Split(full.images[val_idx], full.labels[val_idx]), test, list(classes), (0.5,), (0.25,))
    data.mean, data.std = channel_stats(data.train.images[:5000])
    return data


# The MNIST family: four IDX files each, as their publishers ship them (gzipped or not).
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MNIST_FAMILY = {  # name -> (torchvision class, where to get the files)
    "mnist": ("MNIST", "https://yann.lecun.com/exdb/mnist/ (or torchvision's mirror)"),
    "fashionmnist": ("FashionMNIST", "https://github.com/zalandoresearch/fashion-mnist"),
    "kmnist": ("KMNIST", "https://github.com/rois-codh/kmnist"),
}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST family's format; `.gz` or not) as a uint8 array of its shape."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes; expected the publisher's *-ubyte(.gz) files")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(data[3])]
    values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * len(dims))
    if values.size != int(np.prod(dims)):
        raise DataError(f"{path}: holds {values.size} values where its header says {int(np.prod(dims))}; the file is "
                        f"cut short, fetch it again")
    return values.reshape(dims).copy()  # writable, for torch


def _idx_file(folders: list[Path], stem: str) -> Path | None:
    for folder in folders:
        for name in (stem, f"{stem}.gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _found(path: Path | None) -> Path:
    assert path is not None, "checked by the caller: every file is there"
    return path


def _mnist_family(config: TrainConfig, name: str) -> DataBundle:
    cls_name, url = MNIST_FAMILY[name]
    root = data_root(config)
    # where users keep them: the data root itself, a folder named for the set, or torchvision's layout
    folders = [root, root / name, root / cls_name, root / cls_name / "raw"]
    stems = [stem for pair in IDX_FILES.values() for stem in pair]
    if any(_idx_file(folders, stem) is None for stem in stems) and config.download:
        try:
            _torchvision_set(name, cls_name, root, config, "", url)  # fetches into root/<cls_name>/raw
        except DataError:
            pass  # named below, with the files still missing
    missing = [stem for stem in stems if _idx_file(folders, stem) is None]
    if missing:
        raise _missing(name, root, f"expected {', '.join(f'{s}.gz' for s in missing)} (gzipped or not) from {url} "
                                   f"in {root / name} or {root}, or pass --data-dir to their folder")

    def build(which: str) -> tuple[np.ndarray, np.ndarray]:
        images_file, labels_file = (_found(_idx_file(folders, stem)) for stem in IDX_FILES[which])
        images, labels = read_idx(images_file), read_idx(labels_file)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{images_file}: {images.shape} images against {labels.shape} labels in {labels_file}; "
                            f"the files do not belong together")
        return images[:, None], labels  # one channel: grayscale stays grayscale

    import torchvision

    classes = list(getattr(torchvision.datasets, cls_name).classes)
    source = str(_found(_idx_file(folders, IDX_FILES["train"][0])).resolve())
    return _tensor_bundle(config, name, build, classes, source)


def load_mnist(config: TrainConfig) -> DataBundle:
    return _mnist_family(config, "mnist")


def load_fashionmnist(config: TrainConfig) -> DataBundle:
    return _mnist_family(config, "fashionmnist")


def load_kmnist(config: TrainConfig) -> DataBundle:
    return _mnist_family(config, "kmnist")


def load_svhn(config: TrainConfig) -> DataBundle:
    """SVHN's cropped digits (train_32x32.mat, test_32x32.mat); the `extra` split is not used."""
    folder = data_root(config) / "svhn"
    url = "http://ufldl.stanford.edu/housenumbers/"

    def build(which: str):
        ds = _torchvision_set("svhn", "SVHN", folder, config, f"{which}_32x32.mat", url, split=which)
        return ds.data, np.asarray(ds.labels)

    return _tensor_bundle(config, "svhn", build, [str(d) for d in range(10)], str(folder.resolve()))


def load_stl10(config: TrainConfig) -> DataBundle:
    """STL-10's labelled images (stl10_binary/train_X.bin, ...); the unlabelled ones are not used."""
    folder = data_root(config) / "stl10"
    url = "https://cs.stanford.edu/~acoates/stl10/"
    files = "stl10_binary/ (train_X.bin, train_y.bin, test_X.bin, test_y.bin, unlabeled_X.bin, class_names.txt)"

    def build(which: str):
        ds = _torchvision_set("stl10", "STL10", folder, config, files, url, split=which)
        return ds.data, np.asarray(ds.labels)

    data = _tensor_bundle(config, "stl10", build, [], str(folder.resolve()))
    names = folder / "stl10_binary" / "class_names.txt"
    classes = names.read_text().split() if names.is_file() else []
    data.classes = classes if len(classes) == 10 else [str(i) for i in range(10)]
    return data


def load_eurosat(config: TrainConfig) -> DataBundle:
    """EuroSAT's RGB satellite tiles (eurosat/2750/<class>/*.jpg); no official split: carved."""
    ds = _torchvision_set("eurosat", "EuroSAT", data_root(config), config, "eurosat/2750/<class>/*.jpg",
                          "https://github.com/phelber/EuroSAT")
    return _carved(config, "eurosat", [(str(p), int(label)) for p, label in ds.samples], list(ds.classes))


def load_pets(config: TrainConfig) -> DataBundle:
    """Oxford-IIIT Pets (oxford-iiit-pet/images, annotations/trainval.txt and test.txt): 37 breeds."""
    url = "https://www.robots.ox.ac.uk/~vgg/data/pets/"
    files = "oxford-iiit-pet/images/*.jpg and oxford-iiit-pet/annotations/{trainval,test}.txt"
    splits: dict[str, Any] = {}
    classes: list[str] = []
    for split in ("trainval", "test"):
        ds = _torchvision_set("pets", "OxfordIIITPet", data_root(config), config, files, url, split=split)
        splits[split] = [(str(p), int(label)) for p, label in zip(ds._images, ds._labels)]
        classes = classes or list(ds.classes)  # named from the training split's image ids
    return _files_bundle(config, "pets", splits["trainval"], splits["test"], classes)


def load_food101(config: TrainConfig) -> DataBundle:
    """Food-101 (food-101/images/<class>/*.jpg, food-101/meta/{train,test}.json): 101 dishes."""
    url = "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/"
    files = "food-101/images/<class>/*.jpg and food-101/meta/{train,test}.json"
    splits = {}
    for split in ("train", "test"):
        ds = _torchvision_set("food101", "Food101", data_root(config), config, files, url, split=split)
        splits[split] = [(str(p), int(label)) for p, label in zip(ds._image_files, ds._labels)]
    return _files_bundle(config, "food101", splits["train"], splits["test"], ds.classes)


def load_dtd(config: TrainConfig) -> DataBundle:
    """The Describable Textures Dataset (dtd/dtd/images, labels/{train,val,test}1.txt): its
    official split 1, validation included."""
    url = "https://www.robots.ox.ac.uk/~vgg/data/dtd/"
    files = "dtd/dtd/images/<class>/*.jpg and dtd/dtd/labels/{train,val,test}1.txt"
    splits = {}
    for split in ("train", "val", "test"):
        ds = _torchvision_set("dtd", "DTD", data_root(config), config, files, url, split=split)
        splits[split] = [(str(p), int(label)) for p, label in zip(ds._image_files, ds._labels)]
    return _files_bundle(config, "dtd", splits["train"], splits["test"], ds.classes, val=splits["val"])


def load_caltech101(config: TrainConfig) -> DataBundle:
    """Caltech-101 (caltech101/101_ObjectCategories/<class>/image_*.jpg, the background class
    left out as torchvision does); no official split: carved."""
    ds = _torchvision_set("caltech101", "Caltech101", data_root(config), config,
                          "caltech101/101_ObjectCategories/<class>/image_NNNN.jpg",
                          "https://data.caltech.edu/records/mzrjq-6wc02")
    base = Path(ds.root) / "101_ObjectCategories"
    items = [(str(base / ds.categories[label] / f"image_{index:04d}.jpg"), int(label))
             for index, label in zip(ds.index, ds.y)]
    return _carved(config, "caltech101", items, list(ds.categories))


# dataset name (the config's `dataset`) -> its loader
LOADERS: dict[str, Callable[[TrainConfig], DataBundle]] = {
    "digits": load_digits,
    "synthetic": load_synthetic,
    "flowers102": load_flowers102,
    "flowers5": load_flowers5,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "imagefolder": load_imagefolder,
    "mnist": load_mnist,
    "fashionmnist": load_fashionmnist,
    "kmnist": load_kmnist,
    "svhn": load_svhn,
    "stl10": load_stl10,
    "eurosat": load_eurosat,
    "pets": load_pets,
    "food101": load_food101,
    "dtd": load_dtd,
    "caltech101": load_caltech101,
}
DATA_KEYS = ("dataset", "data_dir", "download", "image_size", "augment", "val_fraction", "max_train_samples",
             "synthetic_classes", "synthetic_samples", "synthetic_region")


def data_key(config: TrainConfig) -> tuple:
    """The config values a loaded dataset depends on: runs that agree on these can share one."""
    return tuple(getattr(config, k) for k in DATA_KEYS)


def load_data(config: TrainConfig) -> DataBundle:
    """The train, validation and test splits of `config.dataset`, as uint8 tensors."""
    if config.dataset not in LOADERS:
        raise DataError(f"dataset {config.dataset!r} has no loader; available: {', '.join(LOADERS)}")
    bundle = LOADERS[config.dataset](config)
    if config.max_train_samples:
        bundle.train = bundle.train.take(config.max_train_samples)
    return bundle
