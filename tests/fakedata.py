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
