"""Small data sets written in the exact on-disk formats of the real ones."""

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def jpeg(path: Path, seed: int, size=(40, 30)) -> None:
    """A JPEG whose colour depends on `seed` (so classes differ): a smooth gradient, a little noise."""
    rng = np.random.default_rng(seed)
    base = np.array([(seed * 53) % 256, (seed * 97) % 256, (seed * 31) % 256], dtype=np.float32)
    ys, xs = np.mgrid[0:size[1], 0:size[0]]
    ramp = (60 * xs / size[0] + 40 * ys / size[1])[..., None]
    array = np.clip(base * 0.6 + ramp + rng.normal(0, 3, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=95)


def flowers102(root: Path, per_split: int = 2, classes: int = 3) -> dict:
    """flowers-102/jpg/image_NNNNN.jpg + imagelabels.mat + setid.mat, as the Oxford archive holds them."""
    from scipy.io import savemat

    base = root / "flowers-102"
    labels, ids = [], {"trnid": [], "valid": [], "tstid": []}
    image_id = 0
    for c in range(classes):
        for key in ids:
            for _ in range(per_split):
                image_id += 1
                jpeg(base / "jpg" / f"image_{image_id:05d}.jpg", seed=c, size=(50 + image_id, 40))
                labels.append(c + 1)  # labels are 1-based in the .mat file
                ids[key].append(image_id)
    savemat(base / "imagelabels.mat", {"labels": np.array(labels, dtype=np.uint8)})
    savemat(base / "setid.mat", {k: np.array(v, dtype=np.uint16) for k, v in ids.items()})
    return {k: len(v) for k, v in ids.items()}


def class_folders(root: Path, classes: list[str], per_class: int = 10) -> None:
    for c, name in enumerate(classes):
        for i in range(per_class):
            jpeg(root / name / f"{name}_{i}.jpg", seed=c, size=(36 + i, 30))


def cifar(root: Path, hundred: bool = False, per_batch: int = 20) -> None:
    """The python pickle batches of CIFAR-10 (5 train batches + test) or CIFAR-100 (train + test)."""
    rng = np.random.default_rng(0)
    classes = 100 if hundred else 10
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"class{i}" for i in range(classes)]
    batches = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    for name in batches + ["test"]:
        n = per_batch * (5 if hundred and name == "train" else 1)
        labels = [i % classes for i in range(n)]
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 ("fine_labels" if hundred else "labels"): labels}
        with open(folder / ("test" if hundred and name == "test" else ("test_batch" if name == "test" else name)),
                  "wb") as f:
            pickle.dump(entry, f)
    meta = {"fine_label_names": names} if hundred else {"label_names": names}
    with open(folder / ("meta" if hundred else "batches.meta"), "wb") as f:
        pickle.dump(meta, f)


# --- The standard sets by name (trainer.datasets), each in the form its publisher ships it.


def idx_files(folder: Path, train: int = 30, test: int = 10, gz: bool = True, side: int = 28) -> None:
    """The MNIST family's four IDX files: big-endian header, then the bytes (0x08: unsigned byte).
    The class is a square whose brightness (and size) grows with the label."""
    import gzip

    folder.mkdir(parents=True, exist_ok=True)
    for stem, n in (("train", train), ("t10k", test)):
        labels = np.arange(n, dtype=np.uint8) % 10
        images = np.zeros((n, side, side), dtype=np.uint8)
        for i, label in enumerate(labels):
            square = 6 + label
            images[i, 4:4 + square, 4:4 + square] = 30 + 22 * label
        for kind, array, code in (("images-idx3", images, 3), ("labels-idx1", labels, 1)):
            data = b"\0\0\x08" + bytes([code]) + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()
            path = folder / f"{stem}-{kind}-ubyte{'.gz' if gz else ''}"
            path.write_bytes(gzip.compress(data) if gz else data)


def svhn(folder: Path, train: int = 30, test: int = 10) -> None:
    """train_32x32.mat / test_32x32.mat: X [32, 32, 3, N] uint8, y [N, 1] with 10 for the digit 0."""
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        digits = np.arange(n) % 10
        x = rng.integers(0, 60, (32, 32, 3, n), dtype=np.uint8)
        for i, d in enumerate(digits):
            x[4 + 2 * d:10 + 2 * d, 4:28, :, i] = 250
        savemat(folder / f"{split}_32x32.mat", {"X": x, "y": np.where(digits == 0, 10, digits).reshape(n, 1)})


def stl10(folder: Path, train: int = 20, test: int = 10) -> list[str]:
    """stl10_binary/: {train,test}_X.bin (N x 3 x 96 x 96, column-major per channel), {train,test}_y.bin
    (1-based), class_names.txt, and an unlabeled_X.bin (empty here: the loader never reads it)."""
    base = folder / "stl10_binary"
    base.mkdir(parents=True, exist_ok=True)
    classes = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    for split, n in (("train", train), ("test", test)):
        labels = np.arange(n) % 10
        x = np.zeros((n, 3, 96, 96), dtype=np.uint8)
        for i, label in enumerate(labels):
            x[i, label % 3] = 40 + 20 * label
        (base / f"{split}_X.bin").write_bytes(np.transpose(x, (0, 1, 3, 2)).tobytes())
        (base / f"{split}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())
    (base / "unlabeled_X.bin").write_bytes(b"")
    (base / "class_names.txt").write_text("\n".join(classes) + "\n")
    return classes


def eurosat(root: Path, per_class: int = 10) -> list[str]:
    classes = ["AnnualCrop", "Forest", "River"]
    for c, name in enumerate(classes):
        for i in range(per_class):
            jpeg(root / "eurosat" / "2750" / name / f"{name}_{i + 1}.jpg", seed=c, size=(64, 64))
    return classes


def pets(root: Path, per_split: int = 4) -> list[str]:
    """oxford-iiit-pet/images/<Breed>_<n>.jpg and annotations/{trainval,test}.txt ("id class species breed")."""
    base = root / "oxford-iiit-pet"
    breeds = [("Abyssinian", 1), ("american_bulldog", 2), ("Bengal", 1)]
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    number = 0
    for split in ("trainval", "test"):
        lines = []
        for label, (breed, species) in enumerate(breeds, start=1):
            for _ in range(per_split):
                number += 1
                jpeg(base / "images" / f"{breed}_{number}.jpg", seed=label, size=(60, 50))
                lines.append(f"{breed}_{number} {label} {species} 1")
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return ["Abyssinian", "American Bulldog", "Bengal"]


def food101(root: Path, per_split: int = 4) -> list[str]:
    """food-101/images/<class>/<id>.jpg and food-101/meta/{train,test}.json ({class: ["class/id", ...]})."""
    import json

    base = root / "food-101"
    classes = ["apple_pie", "bibimbap", "ramen"]
    (base / "meta").mkdir(parents=True, exist_ok=True)
    number = 0
    for split in ("train", "test"):
        meta = {}
        for c, name in enumerate(classes):
            meta[name] = []
            for _ in range(per_split):
                number += 1
                jpeg(base / "images" / name / f"{number}.jpg", seed=c, size=(64, 48))
                meta[name].append(f"{name}/{number}")
        (base / "meta" / f"{split}.json").write_text(json.dumps(meta))
    (base / "meta" / "classes.txt").write_text("\n".join(classes) + "\n")
    return classes


def dtd(root: Path, per_split: int = 3) -> list[str]:
    """dtd/dtd/images/<class>/<class>_NNNN.jpg and dtd/dtd/labels/{train,val,test}1.txt ("class/file")."""
    base = root / "dtd" / "dtd"
    classes = ["banded", "cracked", "dotted"]
    (base / "labels").mkdir(parents=True, exist_ok=True)
    number = 0
    for split in ("train", "val", "test"):
        lines = []
        for c, name in enumerate(classes):
            for _ in range(per_split):
                number += 1
                jpeg(base / "images" / name / f"{name}_{number:04d}.jpg", seed=c, size=(50, 50))
                lines.append(f"{name}/{name}_{number:04d}.jpg")
        (base / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
    return classes


def caltech101(root: Path, per_class: int = 10) -> list[str]:
    """caltech101/101_ObjectCategories/<class>/image_NNNN.jpg, the BACKGROUND_Google folder included
    (torchvision leaves it out of the classes); some images grayscale, as in the real set."""
    base = root / "caltech101" / "101_ObjectCategories"
    classes = ["Faces_easy", "accordion", "airplanes"]
    for c, name in enumerate(["BACKGROUND_Google", *classes]):
        for i in range(per_class):
            path = base / name / f"image_{i + 1:04d}.jpg"
            jpeg(path, seed=c, size=(48, 40))
            if i % 3 == 0:
                Image.open(path).convert("L").save(path)
    return classes
