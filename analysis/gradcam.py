"""Grad-CAM (the grad-cam package) of a trained model.

Every resweep model exposes `.stages`, its residual stages 1-4, so the target layers are
found the same way for ResNet9, the CIFAR ResNet18 and torchvision's ResNets: the last
stage for the class maps, each stage for the per-stage maps of project 004.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn


def target_layers(model: nn.Module) -> list[nn.Module]:
    """The layer whose activations Grad-CAM weighs: the last residual stage."""
    return [_stages(model)[-1]]


def stage_layers(model: nn.Module) -> list[nn.Module]:
    return list(_stages(model))


def _stages(model: nn.Module) -> nn.Sequential:
    return cast(nn.Sequential, model.stages)  # trainer.models names a ResNet's residual stages so


def cam_maps(model: nn.Module, images: torch.Tensor, classes: list[int], layer: nn.Module | None = None) -> np.ndarray:
    """Grad-CAM maps [B, H, W] in [0, 1] of `images` (normalised model input) for `classes`."""
    layers = [layer] if layer is not None else target_layers(model)
    with GradCAM(model=model, target_layers=layers) as cam:
        return cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in classes])


def denormalise(images: torch.Tensor, mean, std) -> np.ndarray:
    """Model input back to displayable [N, H, W, 3] floats in [0, 1] (a grayscale image as three
    equal channels, so that the maps overlay it in colour)."""
    x = images.detach().float().cpu() * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
    return x.clamp(0, 1).expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy()


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return show_cam_on_image(image.astype(np.float32), mask, use_rgb=True)


def mass_in(mask: np.ndarray, top: int, left: int, size: int) -> float:
    """Fraction of a CAM's total mass inside the square [top:top+size, left:left+size]."""
    total = float(mask.sum())
    return float(mask[top:top + size, left:left + size].sum()) / total if total > 0 else 0.0
