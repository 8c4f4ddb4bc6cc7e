"""The seeds' networks as plain `nn.Module`s.

- `ResNet9`: the small from-scratch network of project 001 (a `width` knob shrinks it for CPUs).
- `CifarResNet18`: the 32x32 ResNet-18 of projects 003/004, with batch, group or layer norm.
- torchvision's resnet18/34/50/101, optionally ImageNet-pretrained, with a linear, `mlp`
  (project 000) or `deep` (project 002) head. Every model exposes `.head` (the classifier) and
  `.stages` (its four residual stages, where Grad-CAM looks).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ConfigError, TrainConfig
from .errors import TrainerError


def conv_block(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    """conv-conv/pool-res-conv/pool-conv/pool-res, adaptive max pool, linear (project 001)."""

    def __init__(self, num_classes: int, width: int = 64, in_channels: int = 3):
        super().__init__()
        w = width
        self.stem = conv_block(in_channels, w)
        self.stages = nn.ModuleList([
            nn.Sequential(conv_block(w, 2 * w, pool=True),
                          Residual(nn.Sequential(conv_block(2 * w, 2 * w), conv_block(2 * w, 2 * w)))),
            conv_block(2 * w, 4 * w, pool=True),
            conv_block(4 * w, 8 * w, pool=True),
            Residual(nn.Sequential(conv_block(8 * w, 8 * w), conv_block(8 * w, 8 * w))),
        ])
        self.pool = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(8 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(self.pool(x))


def make_norm(kind: str, channels: int, groups: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(groups, channels)
    if kind == "layer":  # LayerNorm over (C, H, W) of each image, as project 004 uses it
        return nn.GroupNorm(1, channels)
    raise ConfigError(f"norm={kind!r} is not known; allowed: batch, group, layer")


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.n1 = make_norm(norm, c_out, groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.n2 = make_norm(norm, c_out, groups)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          make_norm(norm, c_out, groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.n1(self.conv1(x)))
        out = self.n2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet18(nn.Module):
    """ResNet-18 for 32x32 inputs: 3x3 stem, no max pool, stages of 64/128/256/512 (projects 003/004)."""

    def __init__(self, num_classes: int, norm: str = "batch", groups: int = 2, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, padding=1, bias=False), make_norm(norm, 64, groups),
                                  nn.ReLU(inplace=True))
        stages, c_in = [], 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(BasicBlock(c_in, c_out, stride, norm, groups),
                                        BasicBlock(c_out, c_out, 1, norm, groups)))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(self.pool(x))


def make_head(kind: str, features: int, num_classes: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(features, num_classes)
    if kind == "mlp":  # project 000: 2048 -> 512 -> classes
        return nn.Sequential(nn.Linear(features, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                             nn.Dropout(0.5), nn.Linear(512, num_classes))
    if kind == "deep":  # project 002: dropout 0.5, then 1024-512-256-128 with dropout 0.2
        sizes = [features, 1024, 512, 256, 128]
        layers: list[nn.Module] = [nn.Dropout(0.5)]
        for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
            if i:
                layers.append(nn.Dropout(0.2))
            layers.append(nn.Linear(a, b))
        layers += [nn.Dropout(0.2), nn.Linear(128, num_classes)]
        return nn.Sequential(*layers)
    raise ConfigError(f"head={kind!r} is not known; allowed: linear, mlp, deep")


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet body with our own head; `pretrained` loads ImageNet weights. Its stem
    takes three channels: a grayscale image has its one channel repeated (the ImageNet filters
    stay as they were learnt)."""

    def __init__(self, arch: str, num_classes: int, head: str = "linear", pretrained: bool = False,
                 in_channels: int = 3):
        super().__init__()
        self.repeat = 3 // in_channels
        import torchvision

        builder = getattr(torchvision.models, arch)
        weights = None
        if pretrained:
            weights = torchvision.models.get_model_weights(arch).DEFAULT
        try:
            net = builder(weights=weights)
        except Exception as err:  # URLError, HTTPError, OSError, hash mismatch, ...
            file = weights.url.rsplit("/", 1)[-1] if weights else "the weights file"
            raise TrainerError(
                f"could not fetch ImageNet weights for {arch} ({type(err).__name__}: {str(err)[:80]}); "
                f"put {file} in {torch.hub.get_dir()}/checkpoints "
                f"or set pretrained=false") from None
        features = net.fc.in_features
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.pool = nn.Sequential(net.avgpool, nn.Flatten())
        self.head = make_head(head, features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.repeat > 1:
            x = x.expand(-1, 3, -1, -1)
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(self.pool(x))


def build_model(config: TrainConfig, num_classes: int, in_channels: int = 3) -> nn.Module:
    """The config's network for `num_classes` and images of `in_channels` (1: grayscale, 3: colour)."""
    if in_channels not in (1, 3):
        raise ConfigError(f"images of {in_channels} channels: the models take 1 (grayscale) or 3 (colour)")
    if config.model == "resnet9":
        return ResNet9(num_classes, width=config.width, in_channels=in_channels)
    if config.model == "resnet18_cifar":
        return CifarResNet18(num_classes, norm=config.norm, groups=config.groups, in_channels=in_channels)
    if config.model in ("resnet18", "resnet34", "resnet50", "resnet101"):
        return TorchvisionResNet(config.model, num_classes, head=config.head, pretrained=config.pretrained,
                                 in_channels=in_channels)
    raise ConfigError(f"model={config.model!r} is not known")


def set_backbone_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze or unfreeze everything but `model.head`. Frozen BatchNorm layers also stop
    updating their running statistics (see `train_mode`)."""
    for name, param in model.named_parameters():
        if not name.startswith("head."):
            param.requires_grad_(trainable)


def train_mode(model: nn.Module) -> None:
    """model.train(), but batch-norm layers whose parameters are frozen stay in eval mode."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
