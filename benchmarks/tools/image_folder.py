"""An image folder as a user has one, from real data that installs offline: train/, val/ and
test/ folders of class sub-folders of PNG files, for the benchmarks that sweep an image folder
(`peers.py`, the recorded curves of `search_settings.py`).

- `animal`: Animal-MNIST (10,000 real 28 x 28 grayscale animal silhouettes, 10 classes of
  1,000; MIT licence), shipped inside its PyPI wheel. Install the data alone, without its
  TensorFlow requirement: `pip install animal-mnist --no-deps`. Split 70/10/20, stratified.
- `digits`: scikit-learn's 1,797 8 x 8 handwritten digits, upscaled to 16 x 16: the smoke size.

Three problems unlike those and unlike each other, generated with real structure (no other image
data installs offline), each a pure function of its seed, the same images on every machine:

- `glyphs`: the 26 capital letters, 32 x 32 grayscale, each drawn in one of the system's DejaVu
  typefaces (sans, serif, mono, condensed; bold, oblique) at a random size, angle (within 15
  degrees) and place, light on dark or dark on light, over noise and a stray stroke. 26 classes
  of 300.
- `shapes`: 6 shapes (circle, square, triangle, pentagon, star, cross), 32 x 32 colour, filled or
  outlined, of any size, angle and place, in a colour that stands out from a colour gradient
  crossed by a distractor line. 6 classes of 1,000.
- `gratings`: 8 textures, a sinusoidal grating at one of 4 orientations and 2 spatial frequencies
  (each jittered), at a random phase and a faint contrast under a Gaussian window at a random
  place, in strong pixel noise: low-level and fine-grained. 16 x 16 grayscale, 8 classes of 800.

Each was made learnable by a ResNet9 of width 16 at 16 px in 4 epochs of 2,000 images (the
recordings' budget on 2 cores), at some of its search space and not at the rest. The first
drafts (two stray strokes, a shape of any colour, letters turned up to 25 degrees) left SGD at
chance on both, and Adam at a third on the shapes.

The wheel stores numpy arrays as pickles; they are read by an unpickler that accepts numpy's
array classes and nothing else, so the file cannot run code.

    python benchmarks/tools/image_folder.py animal /tmp/animal
    python benchmarks/tools/image_folder.py glyphs /tmp/glyphs
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


LETTERS = [chr(ord("A") + i) for i in range(26)]
SHAPES = ["circle", "square", "triangle", "pentagon", "star", "cross"]
GRATINGS = [f"{angle}deg-{scale}" for angle in (0, 45, 90, 135) for scale in ("coarse", "fine")]


def _fonts() -> list[str]:
    found = sorted(str(p) for p in Path("/usr/share/fonts").rglob("DejaVu*.ttf")
                   if "Math" not in p.name and "ExtraLight" not in p.name)
    if not found:
        raise SystemExit("glyphs draws with the DejaVu fonts: apt-get install fonts-dejavu-core")
    return found


def _strokes(rng: np.random.Generator, size: int, count: int) -> list[tuple[float, float, float, float]]:
    return [tuple(rng.uniform(0, size, 4).tolist()) for _ in range(count)]  # type: ignore[misc]


def glyphs_arrays(per_class: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    fonts, cache = _fonts(), {}
    images, labels = [], []
    for label, letter in enumerate(LETTERS):
        for _ in range(per_class):
            path, size = fonts[int(rng.integers(len(fonts)))], int(rng.integers(18, 28))
            font = cache.setdefault((path, size), ImageFont.truetype(path, size))
            canvas = Image.new("L", (48, 48), 0)
            ImageDraw.Draw(canvas).text((24, 24), letter, fill=255, font=font, anchor="mm")
            canvas = canvas.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR,
                                   translate=(float(rng.uniform(-4, 4)), float(rng.uniform(-4, 4))))
            glyph = np.asarray(canvas.crop((8, 8, 40, 40)), dtype=np.float32) / 255
            strokes = Image.new("L", (32, 32), 0)
            draw = ImageDraw.Draw(strokes)
            for line in _strokes(rng, 32, 1):
                draw.line(line, fill=int(rng.integers(80, 256)), width=1)
            ground = float(rng.uniform(0, 0.55))  # light ink on a dark ground, at least 0.45 apart,
            ink = float(rng.uniform(ground + 0.45, 1))
            if rng.random() < 0.5:  # or dark on light
                ground, ink = 1 - ground, 1 - ink
            background = ground + rng.normal(0, 0.08, (32, 32)) + \
                (ink - ground) * 0.5 * np.asarray(strokes, dtype=np.float32) / 255
            image = background * (1 - glyph) + ink * glyph + rng.normal(0, 0.05, (32, 32))
            images.append((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
            labels.append(label)
    return np.stack(images), np.array(labels, dtype=np.int64), LETTERS


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if kind == "star":
        radii, count = [r, r * 0.45] * 5, 10
    elif kind == "cross":  # a plus of arms a third as wide as it is long
        w = r / 3
        corners = [(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r), (-w, -r), (-w, -w), (-r, -w), (-r, w),
                   (-w, w), (-w, r)]
        c, s = np.cos(angle), np.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners]
    else:
        count = {"square": 4, "triangle": 3, "pentagon": 5}[kind]
        radii = [r] * count
    turns = [angle + 2 * np.pi * i / count for i in range(count)]
    return [(cx + radius * np.cos(turn), cy + radius * np.sin(turn)) for radius, turn in zip(radii, turns)]


def shapes_arrays(per_class: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    scale, size = 2, 32  # drawn at twice the size, then scaled down: smooth edges
    ramp = np.linspace(0, 1, size * scale, dtype=np.float32)
    images, labels = [], []
    for label, kind in enumerate(SHAPES):
        for _ in range(per_class):
            a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
            t = ramp[None, :] if rng.random() < 0.5 else ramp[:, None]
            ground = (a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None])
            canvas = Image.fromarray(np.broadcast_to(ground, (size * scale, size * scale, 3)).astype(np.uint8))
            draw = ImageDraw.Draw(canvas)
            for line in _strokes(rng, size * scale, 1):
                draw.line(line, fill=tuple(int(v) for v in rng.integers(0, 256, 3)), width=int(rng.integers(2, 4)))
            r = float(rng.uniform(8, 13)) * scale
            cx, cy = (float(v) for v in rng.uniform(r + 2, size * scale - r - 2, 2))
            # a colour that stands out from the ground: brightness at least 90 of 255 apart
            lightness = (a.mean() + b.mean()) / 2
            shade = rng.uniform(0, max(1.0, lightness - 90)) if lightness > 127 else \
                rng.uniform(min(254.0, lightness + 90), 255)
            colour = tuple(int(v) for v in np.clip(shade + rng.uniform(-40, 40, 3), 0, 255))
            filled, width = rng.random() < 0.5, int(rng.integers(3, 6))
            if kind == "circle":
                box = (cx - r, cy - r, cx + r, cy + r)
                draw.ellipse(box, fill=colour) if filled else draw.ellipse(box, outline=colour, width=width)
            else:
                points = _polygon(kind, cx, cy, r, float(rng.uniform(0, 2 * np.pi)))
                if filled:
                    draw.polygon(points, fill=colour)
                else:
                    draw.line([*points, points[0]], fill=colour, width=width, joint="curve")
            small = np.asarray(canvas.resize((size, size), Image.BILINEAR), dtype=np.float32)
            images.append(np.clip(small + rng.normal(0, 8, small.shape), 0, 255).round().astype(np.uint8))
            labels.append(label)
    return np.stack(images), np.array(labels, dtype=np.int64), SHAPES


def gratings_arrays(per_class: int = 800, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    size = 16
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    images, labels = [], []
    for label, name in enumerate(GRATINGS):
        angle, scale = np.deg2rad(float(name.split("deg")[0])), name.split("-")[1]
        cycles = 2.0 if scale == "coarse" else 4.0  # across the image
        for _ in range(per_class):
            theta = angle + np.deg2rad(rng.uniform(-8, 8))
            frequency = cycles * rng.uniform(0.85, 1.15) / size
            wave = np.sin(2 * np.pi * frequency * (x * np.cos(theta) + y * np.sin(theta)) + rng.uniform(0, 2 * np.pi))
            cx, cy = rng.uniform(4, size - 4, 2)
            sigma = rng.uniform(3, 5)
            window = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma ** 2))
            image = 0.5 + rng.uniform(0.1, 0.35) * wave * window + rng.normal(0, 0.3, (size, size))
            images.append((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
            labels.append(label)
    return np.stack(images), np.array(labels, dtype=np.int64), GRATINGS


ARRAYS = {"animal": animal_arrays, "digits": digits_arrays, "glyphs": glyphs_arrays, "shapes": shapes_arrays,
          "gratings": gratings_arrays}


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

    done = root / ".complete"
    if done.exists():
        return root
    images, labels, classes = ARRAYS[name]()
    for split, idx in split_indices(labels, (0.1, 0.2)).items():
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
        for i in idx:
            Image.fromarray(images[i]).save(root / split / classes[labels[i]] / f"{i:05d}.png")
    done.write_text(f"{name}: {len(labels)} images\n")
    return root


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ARRAYS:
        raise SystemExit(f"usage: python benchmarks/tools/image_folder.py {'|'.join(ARRAYS)} FOLDER")
    print(write_folder(sys.argv[1], Path(sys.argv[2])))
