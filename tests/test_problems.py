"""The generated image problems of the search recordings (benchmarks/tools/image_folder.py):
each a pure function of its seed, balanced, and written as an image folder the trainer reads."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "tools"))
import image_folder  # noqa: E402

GENERATED = {"glyphs": (26, 32, 2), "shapes": (6, 32, 3), "gratings": (8, 16, 2)}  # classes, side, dimensions


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_a_generated_problem_is_the_same_for_its_seed_and_balanced(name):
    make = getattr(image_folder, f"{name}_arrays")
    classes, side, dims = GENERATED[name]
    images, labels, names = make(per_class=4, seed=1)
    again, _, _ = make(per_class=4, seed=1)
    other, _, _ = make(per_class=4, seed=2)
    assert len(names) == classes and images.dtype == np.uint8 and images.shape[1:3] == (side, side)
    assert images.ndim == dims + 1 and np.bincount(labels).tolist() == [4] * classes
    assert np.array_equal(images, again) and not np.array_equal(images, other)
    assert images.std() > 10, "not a blank image"


def test_a_generated_folder_is_read_by_the_trainer_with_every_class(tmp_path, monkeypatch):
    from trainer.config import TrainConfig, from_dict
    from trainer.datasets import load_data

    monkeypatch.setattr(image_folder, "ARRAYS", {"gratings": lambda: image_folder.gratings_arrays(per_class=10)})
    root = image_folder.write_folder("gratings", tmp_path / "gratings")
    assert (root / ".complete").exists()
    data = load_data(from_dict({"dataset": "imagefolder", "data_dir": str(root), "image_size": 16, "device": "cpu"},
                               base=TrainConfig()))
    assert data.classes == sorted(image_folder.GRATINGS)
    assert (len(data.train.labels), len(data.val.labels), len(data.test.labels)) == (56, 8, 16)
