"""An image folder as a user has one, from real data that installs offline: train/, val/ and
test/ folders of class sub-folders of PNG files, for the benchmarks that sweep an image folder
(`peers.py`, the recorded curves of `search_settings.py`).

- `animal`: Animal-MNIST (10,000 real 28 x 28 grayscale animal silhouettes, 10 classes of
  1,000; MIT licence), shipped inside its PyPI wheel. Install the data alone, without its
  TensorFlow requirement: `pip install animal-mnist --no-deps`. Split 70/10/20, stratified.
- `digits`: scikit-learn's 1,797 8 x 8 handwritten digits, upscaled to 16 x 16: the smoke size.

The wheel stores numpy arrays as pickles; they are read by an unpickler that accepts numpy's
array classes and nothing else, so the file cannot run code.

    python benchmarks/tools/image_folder.py animal /tmp/animal
"""

from __future__ import annotations

import gzip
import io
import pickle
import sys
from pathlib import Path

import numpy as np

ANIMALS = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]
_NUMPY_ONLY = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}


class _NumpyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY_ONLY:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: only numpy arrays are read")
        import importlib

        return getattr(importlib.import_module(module), name)


def _read_array(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.asarray(_NumpyUnpickler(io.BytesIO(f.read())).load())


def animal_arrays() -> tuple[np.ndarray, np.ndarray, list[str]]:
    try:
        import animal_mnist  # noqa: F401 - only its data files are used
    except ImportError:
        raise SystemExit("Animal-MNIST is not installed: pip install animal-mnist --no-deps") from None
    folder = Path(animal_mnist.__file__).parent / "data" / "Animal_MNIST"
    images = _read_array(folder / "animal_data_version_3.gz").astype(np.uint8)
    labels = _read_array(folder / "animal_label_version_3.gz").astype(np.int64)
    return images, labels, ANIMALS


def digits_arrays() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * (255 / 16)).round().astype(np.uint8).repeat(2, axis=1).repeat(2, axis=2)
    return images, digits.target.astype(np.int64), [str(d) for d in range(10)]


def split_indices(labels: np.ndarray, shares: tuple[float, float], seed: int = 0) -> dict[str, np.ndarray]:
    """Stratified train/val/test indices: `shares` are val's and test's."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_val, n_test = round(len(idx) * shares[0]), round(len(idx) * shares[1])
        out["val"] += idx[:n_val].tolist()
        out["test"] += idx[n_val:n_val + n_test].tolist()
        out["train"] += idx[n_val + n_test:].tolist()
    return {k: np.array(sorted(v)) for k, v in out.items()}


def write_folder(name: str, root: Path) -> Path:
    """Write the image folder `name` under `root` (kept if already complete); returns it."""
    from PIL import Image

    images, labels, classes = animal_arrays() if name == "animal" else digits_arrays()
    done = root / ".complete"
    if done.exists():
        return root
    for split, idx in split_indices(labels, (0.1, 0.2)).items():
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
        for i in idx:
            Image.fromarray(images[i], mode="L").save(root / split / classes[labels[i]] / f"{i:05d}.png")
    done.write_text(f"{name}: {len(labels)} images\n")
    return root


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("animal", "digits"):
        raise SystemExit("usage: python benchmarks/tools/image_folder.py animal|digits FOLDER")
    print(write_folder(sys.argv[1], Path(sys.argv[2])))
