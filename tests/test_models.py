import torch

from trainer.config import from_dict
from trainer.models import (
    CifarResNet18,
    ResNet9,
    TorchvisionResNet,
    build_model,
    count_parameters,
    set_backbone_trainable,
    train_mode,
)


def test_cifar_resnet18_matches_the_seed_parameter_counts():
    # project 003 prints 11,173,962 parameters for its GroupNorm ResNet-18 at 10 classes
    assert count_parameters(CifarResNet18(10, norm="group")) == 11_173_962
    assert count_parameters(CifarResNet18(10, norm="batch")) == 11_173_962
    assert count_parameters(CifarResNet18(10, norm="layer")) == 11_173_962
    norms = {type(m).__name__ for m in CifarResNet18(10, norm="layer").modules()}
    assert "GroupNorm" in norms and "BatchNorm2d" not in norms


def test_forward_shapes_of_every_model():
    x32 = torch.randn(2, 3, 32, 32)
    assert ResNet9(5, width=8)(x32).shape == (2, 5)
    assert CifarResNet18(10, norm="group")(x32).shape == (2, 10)
    for arch in ("resnet18", "resnet34", "resnet50", "resnet101"):
        model = build_model(from_dict({"model": arch, "head": "linear"}), 7).eval()
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7), arch


def test_heads_of_the_seeds():
    mlp = TorchvisionResNet("resnet50", 102, head="mlp").head
    linears = [m for m in mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2048, 512), (512, 102)]
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in mlp)
    assert [m.p for m in mlp if isinstance(m, torch.nn.Dropout)] == [0.5]
    deep = TorchvisionResNet("resnet50", 100, head="deep").head
    sizes = [(m.in_features, m.out_features) for m in deep if isinstance(m, torch.nn.Linear)]
    assert sizes == [(2048, 1024), (1024, 512), (512, 256), (256, 128), (128, 100)]
    assert [m.p for m in deep if isinstance(m, torch.nn.Dropout)] == [0.5, 0.2, 0.2, 0.2, 0.2]


def test_freezing_the_backbone_leaves_only_the_head_trainable_and_bn_stats_still():
    model = TorchvisionResNet("resnet18", 4, head="mlp")
    set_backbone_trainable(model, trainable=False)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("head.") for n in trainable)
    train_mode(model)
    assert not model.stem[1].training  # frozen backbone BN keeps its running stats
    assert model.head[1].training  # the head's BN trains
    before = model.stem[1].running_mean.clone()
    model(torch.randn(4, 3, 32, 32))
    assert torch.equal(before, model.stem[1].running_mean)
    set_backbone_trainable(model, trainable=True)
    assert all(p.requires_grad for p in model.parameters())


def test_pretrained_weights_load_from_the_torch_hub_cache(tmp_path):
    # torchvision's real loading path; the file is one this test writes where the download would land
    import torchvision

    weights = torchvision.models.ResNet18_Weights.DEFAULT
    reference = torchvision.models.resnet18()
    target = torch.hub.get_dir() + "/checkpoints/" + weights.url.rsplit("/", 1)[-1]
    import os
    os.makedirs(os.path.dirname(target), exist_ok=True)
    torch.save(reference.state_dict(), target)
    model = build_model(from_dict({"model": "resnet18", "pretrained": True}), 3)
    assert torch.equal(model.stages[0][0].conv1.weight, reference.layer1[0].conv1.weight)


def test_missing_pretrained_weights_give_one_line_with_the_fix(monkeypatch):
    import pytest

    from trainer.errors import TrainerError

    # the download fails for real, wherever the test runs: through a proxy on a closed local port
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(TrainerError) as err:
        build_model(from_dict({"model": "resnet18", "pretrained": True}), 3)
    message = str(err.value)
    assert "could not fetch ImageNet weights for resnet18" in message and "pretrained=false" in message
    assert "\n" not in message
