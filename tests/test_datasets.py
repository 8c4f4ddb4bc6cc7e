"""Every loader on small files in the real on-disk formats, download off; the cache; the paths."""

import logging
import multiprocessing
import os

import fakedata
import pytest
import torch
from conftest import tiny
from typer.testing import CliRunner

from sweeps.cli import app
from trainer.augment import EvalTransform, PilEvalTransform, TrainTransform
from trainer.config import from_dict
from trainer.datasets import load_data
from trainer.errors import DataError


@pytest.fixture
def no_md5(monkeypatch):
    """torchvision checks the md5 of the real archives' files; the generated ones differ. Only that
    check is bypassed: the files must still exist."""
    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.flowers102 as flowers

    exists = lambda path, md5=None: os.path.isfile(path)  # noqa: E731
    monkeypatch.setattr(flowers, "check_integrity", exists)
    monkeypatch.setattr(cifar, "check_integrity", exists)


def config(tmp_path, **kw):
    values = dict(data_dir=str(tmp_path), download=False, image_size=32, augment="imagenet")
    values.update(kw)
    return from_dict(values)


def test_flowers102_official_splits_labels_and_classes(tmp_path, no_md5):
    sizes = fakedata.flowers102(tmp_path, per_split=2, classes=3)
    data = load_data(config(tmp_path, dataset="flowers102"))
    assert (len(data.train), len(data.val), len(data.test)) == (sizes["trnid"], sizes["valid"], sizes["tstid"])
    assert data.train.labels.tolist() == [0, 0, 1, 1, 2, 2]  # 1-based .mat labels become 0-based
    assert len(data.classes) == 102 and data.classes[0] == "pink primrose"
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape[1:] == (3, 37, 37)  # 32/0.875


def test_flowers5_layout_from_the_folder_or_its_parent(tmp_path):
    root = tmp_path / "my data ü #1"  # spaces and unusual characters in the path
    fakedata.class_folders(root / "flowers", ["daisy", "dandelion", "rose", "sunflower", "tulip"], per_class=10)
    for data_dir in (root, root / "flowers"):
        data = load_data(config(data_dir, dataset="flowers5"))
        assert data.classes == ["daisy", "dandelion", "rose", "sunflower", "tulip"]
        assert (len(data.train), len(data.val), len(data.test)) == (40, 5, 5)  # 10% test, then 90/10
        for split in (data.train, data.val, data.test):
            assert sorted(set(split.labels.tolist())) == [0, 1, 2, 3, 4]  # stratified
        files = set(data.train.files) | set(data.val.files) | set(data.test.files)
        assert len(files) == 50


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_pickles_with_a_seeded_validation_hold_out(tmp_path, no_md5, hundred):
    per_batch = 200 if hundred else 20  # ten training images per class either way
    fakedata.cifar(tmp_path, hundred=hundred, per_batch=per_batch)
    name = "cifar100" if hundred else "cifar10"
    data = load_data(config(tmp_path, dataset=name, augment="cifar"))
    assert len(data.train) + len(data.val) == 5 * per_batch and len(data.test) == per_batch
    assert len(data.val) == per_batch // 2  # 10%, one image of each class
    assert sorted(set(data.val.labels.tolist())) == list(range(len(data.classes)))
    assert data.classes[:2] == ["class0", "class1"] and len(data.classes) == (100 if hundred else 10)
    assert data.train.images.shape[1:] == (3, 32, 32)
    again = load_data(config(tmp_path, dataset=name, augment="cifar"))
    assert torch.equal(again.val.labels, data.val.labels), "the hold-out is seeded"


def test_imagefolder_plain_and_with_split_folders(tmp_path):
    fakedata.class_folders(tmp_path / "plain", ["cat", "dog"], per_class=10)
    data = load_data(config(tmp_path / "plain", dataset="imagefolder"))
    assert data.classes == ["cat", "dog"] and len(data.train) + len(data.val) + len(data.test) == 20
    for split in ("train", "val"):
        fakedata.class_folders(tmp_path / "split" / split, ["a", "b", "c"], per_class=4)
    data = load_data(config(tmp_path / "split", dataset="imagefolder"))
    assert data.classes == ["a", "b", "c"] and len(data.val) == 12
    assert len(data.train) + len(data.test) == 12 and len(data.test) >= 1


def test_max_train_samples_draws_from_every_class_the_same_images_each_time(tmp_path):
    # folders are read class by class: the first 10 training images are all of "a"
    for split in ("train", "val"):
        fakedata.class_folders(tmp_path / split, ["a", "b", "c"], per_class=12)
    full = load_data(config(tmp_path, dataset="imagefolder")).train
    assert full.labels[:10].unique().tolist() == [0]
    first = load_data(config(tmp_path, dataset="imagefolder", max_train_samples=10)).train
    again = load_data(config(tmp_path, dataset="imagefolder", max_train_samples=10)).train
    assert len(first) == 10 and sorted(first.labels.unique().tolist()) == [0, 1, 2]
    assert torch.equal(first.images, again.images) and first.files == again.files
    assert all(name in full.files for name in first.files)


def test_a_corrupt_jpeg_is_skipped_with_one_warning(tmp_path, caplog):
    fakedata.class_folders(tmp_path, ["cat", "dog"], per_class=10)
    (tmp_path / "cat" / "cat_3.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (tmp_path / "dog" / "broken.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="resweep.data"):
        data = load_data(config(tmp_path, dataset="imagefolder"))
    assert len(data.train) + len(data.val) + len(data.test) == 19  # 21 files, 2 of them unreadable
    warnings = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert warnings and sum(int(w.split("skipped ")[1].split()[0]) for w in warnings) == 2
    assert any("cat_3.jpg" in w or "broken.png" in w for w in warnings)
    rows = []  # and a training on it runs through every epoch
    from trainer import train

    train(from_dict({"model": "resnet9", "width": 4, "epochs": 2, "batch_size": 8, "device": "cpu"},
                    base=config(tmp_path, dataset="imagefolder")), report=lambda m, s: rows.append(m))
    assert len(rows) == 2


@pytest.mark.parametrize("dataset, hint", [
    ("flowers102", "put jpg/, imagelabels.mat and setid.mat"),
    ("cifar10", "https://www.cs.toronto.edu/~kriz/cifar.html"),
    ("cifar100", "https://www.cs.toronto.edu/~kriz/cifar.html"),
    ("flowers5", "Flowers Recognition"),
    ("imagefolder", "class sub-folders"),
])
def test_missing_data_names_the_dataset_the_path_and_the_fix(tmp_path, dataset, hint):
    where = tmp_path / "no data here"
    with pytest.raises(DataError) as err:
        load_data(config(where, dataset=dataset))
    message = str(err.value)
    assert message.startswith(f"{dataset}: no data at {where}") and hint in message and "\n" not in message
    result = CliRunner().invoke(app, ["train", "quickstart", "--set", f"dataset={dataset}", "--set",
                                      "download=false", "--data-dir", str(where)])
    assert result.exit_code == 2 and f"error: {dataset}: no data at" in result.output
    assert "Traceback" not in result.output


def _load_in_child(data_dir, queue):
    from trainer.config import from_dict as make
    from trainer.datasets import load_data as load

    builds = []
    handler = logging.Handler()
    handler.emit = lambda record: builds.append(record.getMessage())
    logger = logging.getLogger("resweep.data")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    data = load(make(dict(data_dir=data_dir, download=False, image_size=32, augment="imagenet",
                          dataset="imagefolder")))
    queue.put((len(data.train), sum("building the data cache" in b for b in builds)))


def test_the_cache_is_built_once_when_two_processes_ask_together(tmp_path):
    fakedata.class_folders(tmp_path, ["cat", "dog"], per_class=30)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    children = [ctx.Process(target=_load_in_child, args=(str(tmp_path), queue)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
        assert child.exitcode == 0
    (size_a, built_a), (size_b, built_b) = queue.get(), queue.get()
    assert size_a == size_b
    assert built_a + built_b == 3, "train, val and test each built once, by one of the two processes"
    cache_files = sorted((tmp_path / ".resweep-cache").glob("*.pt"))
    assert [f.name.split("-")[1] for f in cache_files].count("train") == 1
    stamps = {f: f.stat().st_mtime_ns for f in cache_files}
    load_data(config(tmp_path, dataset="imagefolder"))
    assert {f: f.stat().st_mtime_ns for f in cache_files} == stamps, "a later load reuses the cache"
    assert not list((tmp_path / ".resweep-cache").glob(".*.pt.*")), "no temporary file is left"


@pytest.mark.parametrize("augment, size", [("imagenet", 32), ("cifar", 32), ("light", 16), ("none", 16)])
def test_batch_augmentation_shapes_ranges_and_per_sample_randomness(augment, size):
    images = torch.randint(0, 256, (8, 3, round(size / (0.875 if augment == "imagenet" else 1)),) * 1 + (
        round(size / (0.875 if augment == "imagenet" else 1)),), dtype=torch.uint8)
    images[:] = images[:1]  # eight copies of one image: any difference comes from the augmentation
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    out = TrainTransform(size, mean, std, augment, torch.Generator().manual_seed(0))(images)
    assert out.shape == (8, 3, size, size) and out.dtype == torch.float32
    assert out.min() >= (0 - 0.5) / 0.25 - 1e-4 and out.max() <= (1 - 0.5) / 0.25 + 1e-4
    different = sum(not torch.allclose(out[0], out[i]) for i in range(1, 8))
    if augment == "none":
        assert different == 0
    else:
        assert different >= 6, "samples of one batch get their own crops"


def test_fast_and_pil_paths_agree_at_eval_time(tmp_path):
    fakedata.class_folders(tmp_path, ["cat", "dog"], per_class=4)
    data = load_data(config(tmp_path, dataset="imagefolder", image_size=32))
    from PIL import Image

    fast = EvalTransform(32, data.mean, data.std, "imagenet")(data.test.images)
    pil = torch.stack([PilEvalTransform(32, data.mean, data.std, "imagenet")(Image.open(f).convert("RGB"))
                       for f in data.test.files])
    assert fast.shape == pil.shape
    diff = (fast - pil).abs().mean().item() * max(data.std)  # in [0, 1] pixel units
    assert diff < 0.02, diff


def test_training_through_the_pil_path(tmp_path):
    rows = []
    from trainer import train

    train(tiny(data_path="pil", num_workers=0, epochs=4), report=lambda m, s: rows.append(m))
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["train_loss"] < 0.8 * rows[0]["train_loss"], "the model learns from what the PIL path feeds it"


def test_the_digits_are_scikit_learn_s_own_read_without_importing_it():
    """The digits come from the file scikit-learn ships, read directly: the same images and
    targets as its loader, and a process that loads them never imports scikit-learn (3 s of
    CPU in each trial actor and driver)."""
    import subprocess
    import sys

    import numpy as np
    from sklearn.datasets import load_digits

    from trainer.datasets import digits_arrays

    images, target = digits_arrays()
    theirs = load_digits()
    assert np.array_equal(images, theirs.images) and np.array_equal(target, theirs.target)
    code = ("import sys; from trainer.config import TrainConfig, from_dict; from trainer.datasets import load_data; "
            "data = load_data(from_dict({'dataset': 'digits', 'image_size': 16}, base=TrainConfig())); "
            "print(len(data.train.labels), 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "RESWEEP_DATA": os.environ["RESWEEP_DATA"]})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1259", "False"], out.stdout
