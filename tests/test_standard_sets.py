"""The standard sets by name (MNIST family, SVHN, STL-10, EuroSAT, Pets, Food-101, DTD,
Caltech-101): each from small files in its real on-disk format, download off, through
torchvision's own dataset classes (only their md5 check bypassed), then one epoch of training.
Grayscale stays one channel for from-scratch models and is repeated for ImageNet ones."""

import gzip
import os
from pathlib import Path

import fakedata
import pytest
import torch
from conftest import tiny
from typer.testing import CliRunner

from sweeps.cli import app
from trainer import load_model, train
from trainer.catalog import BY_NAME as CATALOG
from trainer.config import from_dict
from trainer.datasets import LOADERS, load_data
from trainer.errors import DataError
from trainer.models import build_model

README = Path(__file__).parents[1] / "README.md"


@pytest.fixture
def no_md5(monkeypatch):
    """SVHN and STL-10 check the md5 of the real files; the generated ones differ. Only that check
    is bypassed: the files must still exist."""
    import torchvision.datasets.stl10 as stl10
    import torchvision.datasets.svhn as svhn

    exists = lambda path, md5=None: os.path.isfile(path)  # noqa: E731
    monkeypatch.setattr(svhn, "check_integrity", exists)
    monkeypatch.setattr(stl10, "check_integrity", exists)


def _mnist(root, name):
    fakedata.idx_files(root / {"mnist": "MNIST/raw", "fashionmnist": "fashionmnist", "kmnist": "."}[name])
    import torchvision

    cls = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "kmnist": "KMNIST"}[name]
    return list(getattr(torchvision.datasets, cls).classes), (20, 10, 10), 1


# name -> writes the set under root; returns (classes, (train, val, test) sizes, channels). The sizes
# follow stratified_split: val_fraction 0.1 of each class, at least one image of each class.
WRITERS = {
    "mnist": lambda root: _mnist(root, "mnist"),  # torchvision's own layout, MNIST/raw
    "fashionmnist": lambda root: _mnist(root, "fashionmnist"),  # a folder named for the set
    "kmnist": lambda root: _mnist(root, "kmnist"),  # the data root itself
    "svhn": lambda root: (fakedata.svhn(root / "svhn"), ([str(d) for d in range(10)], (20, 10, 10), 3))[1],
    "stl10": lambda root: (fakedata.stl10(root / "stl10"), (10, 10, 10), 3),
    "eurosat": lambda root: (fakedata.eurosat(root), (24, 3, 3), 3),
    "pets": lambda root: (fakedata.pets(root), (9, 3, 12), 3),
    "food101": lambda root: (fakedata.food101(root), (9, 3, 12), 3),
    "dtd": lambda root: (fakedata.dtd(root), (9, 9, 9), 3),
    "caltech101": lambda root: (fakedata.caltech101(root), (24, 3, 3), 3),
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_each_set_loads_from_its_real_format_and_trains_an_epoch(tmp_path, no_md5, name):
    classes, sizes, channels = WRITERS[name](tmp_path)
    config = tiny(dataset=name, data_dir=str(tmp_path), download=False, augment="light", epochs=1, batch_size=8)
    data = load_data(config)
    assert data.classes == classes
    assert (len(data.train), len(data.val), len(data.test)) == sizes
    assert data.channels == channels == CATALOG[name].channels
    for split in (data.train, data.val, data.test):
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (channels, 16, 16)
        assert split.labels.min() >= 0 and split.labels.max() < len(classes)
    assert set(data.test.labels.tolist()) == set(range(len(classes)))  # every class in the test split
    metrics = train(config, data=data)
    assert metrics["epoch"] == 1 and 0.0 <= metrics["val_acc"] <= 1.0 and "test_acc" in metrics


def test_the_mnist_family_reads_the_publishers_files_wherever_they_are(tmp_path):
    """Gzipped or not, in the folder --data-dir names; a grayscale model of one input channel
    learns the digits, and its checkpoint loads back as one."""
    where = tmp_path / "my downloads"
    fakedata.idx_files(where, train=200, test=50, gz=False)
    config = tiny(dataset="mnist", data_dir=str(where), download=False, epochs=15, batch_size=32, image_size=28,
                  lr=0.1, scheduler="onecycle", width=8, val_fraction=0.2, augment="none")
    data = load_data(config)
    assert data.channels == 1 and data.train.images.shape[1:] == (1, 28, 28)
    saved = []
    metrics = train(config, data=data, report=lambda m, save: saved.append(save(tmp_path / "ckpt")))
    assert metrics["test_acc"] > 0.5, metrics  # ten sizes and shades of square: far above chance (0.1)
    model, _, _ = load_model(saved[-1])
    assert model.stem[0].in_channels == 1
    # Grad-CAM of the grayscale model, overlaid in colour on the image shown as three equal channels
    from analysis import gradcam

    shown = gradcam.denormalise(torch.rand(2, 1, 28, 28), data.mean, data.std)
    assert shown.shape == (2, 28, 28, 3) and (shown[..., 0] == shown[..., 2]).all()
    maps = gradcam.cam_maps(model, (torch.rand(1, 1, 28, 28) - 0.5) * 4, [3])
    assert maps.shape == (1, 28, 28) and gradcam.overlay(shown[0], maps[0]).shape == (28, 28, 3)


def test_a_missing_or_damaged_set_is_one_line_naming_folder_files_and_source(tmp_path):
    with pytest.raises(DataError) as err:
        load_data(from_dict({"dataset": "fashionmnist", "data_dir": str(tmp_path), "download": False}))
    message = str(err.value)
    assert str(tmp_path) in message and "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" \
        in message and "zalandoresearch" in message and "\n" not in message
    for name, files in (("svhn", "train_32x32.mat"), ("pets", "annotations"), ("dtd", "labels"),
                        ("caltech101", "101_ObjectCategories"), ("stl10", "train_X.bin")):
        with pytest.raises(DataError) as err:
            load_data(from_dict({"dataset": name, "data_dir": str(tmp_path), "download": False}))
        assert files in str(err.value) and "download is off" in str(err.value) and "\n" not in str(err.value), name
    # a file cut short names itself and the fix
    fakedata.idx_files(tmp_path / "cut", gz=True)
    path = tmp_path / "cut" / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))
    with pytest.raises(DataError, match="cut short, fetch it again"):
        load_data(from_dict({"dataset": "mnist", "data_dir": str(tmp_path / "cut"), "download": False}))


def test_grayscale_one_channel_from_scratch_repeated_for_imagenet_models():
    images = torch.rand(2, 1, 32, 32)
    for model_name in ("resnet9", "resnet18_cifar"):
        model = build_model(from_dict({"model": model_name, "width": 8}), 10, in_channels=1).eval()
        assert model.stem[0].in_channels == 1 and model(images).shape == (2, 10)
    imagenet = build_model(from_dict({"model": "resnet18"}), 10, in_channels=1).eval()
    assert imagenet.stem[0].in_channels == 3  # the ImageNet stem as it is
    with torch.no_grad():
        assert torch.equal(imagenet(images), imagenet(images.repeat(1, 3, 1, 1)))


def test_every_data_set_is_listed_by_sweep_datasets_and_in_the_readme():
    assert set(CATALOG) == set(LOADERS)
    result = CliRunner().invoke(app, ["datasets"])
    assert result.exit_code == 0, result.output
    readme = README.read_text()
    for name, info in CATALOG.items():
        row = next(line for line in result.output.splitlines() if line.split()[:1] == [name])
        assert str(info.image_size) in row and info.augment in row, row
        assert f"| `{name}` |" in readme, f"README's data set table lacks {name}"


def test_changing_the_dataset_brings_its_own_image_size_and_augment(tmp_path):
    """`--set dataset=mnist` on the quickstart trains MNIST at 28 px without flips; a value set
    alongside wins; the plan of a sweep shows the same."""
    from sweeps.planner import make_plan
    from sweeps.presets import load_preset
    from trainer.config import apply_overrides

    quickstart = load_preset("quickstart").train
    assert (quickstart.image_size, quickstart.augment) == (16, "light")
    mnist = apply_overrides(quickstart, ["dataset=fashionmnist"])
    assert (mnist.image_size, mnist.augment) == (28, "light")
    eurosat = apply_overrides(quickstart, ["dataset=eurosat", "image_size=32"])
    assert (eurosat.image_size, eurosat.augment) == (32, "cifar")
    assert apply_overrides(quickstart, ["lr=0.1"]).image_size == 16  # the preset's own stay
    plan = make_plan(load_preset("quickstart"), ["dataset=pets"], 2, None, None, None, str(tmp_path), "p", 0)
    assert (plan.train["image_size"], plan.train["augment"]) == (224, "imagenet")
