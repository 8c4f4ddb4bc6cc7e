"""Augmentation presets on whole batches of image tensors, on the training device.

`TrainTransform` turns a uint8 batch [B, C, H, W] into a normalised float batch with a
different random crop/flip/rotation (one affine warp per image, one `grid_sample` per batch)
and cutout per image; `EvalTransform` does the deterministic resize + center crop +
normalise. Normalising first means the zero padding of a warp is the dataset mean, as in
project 004's mean-colour padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

# Per preset: crop kind, translate (fraction of side) or RandomResizedCrop scale, flips,
# rotation degrees, cutout (fraction of side).
PRESETS: dict[str, dict[str, Any]] = {
    "none": dict(),
    "light": dict(translate=1 / 8, degrees=10.0),  # digits/synthetic: no flips (a flipped 2 is no 2)
    "cifar": dict(translate=4 / 32, hflip=True, degrees=5.0, cutout=16 / 32),  # projects 003/004
    "imagenet": dict(scale=(0.08, 1.0), hflip=True, vflip=True, degrees=30.0),  # project 000
}

# Eval crop fraction: imagenet-style eval resizes to side/0.875 (256 for 224) and center-crops.
EVAL_CROP = {"imagenet": 0.875}


def storage_size(augment: str, image_size: int) -> int:
    """Side at which a dataset's images are cached for this preset and crop size."""
    return round(image_size / EVAL_CROP.get(augment, 1.0))


def _to_float(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    x = images.float().div_(255)
    return x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))


class EvalTransform:
    def __init__(self, size: int, mean, std, augment: str = "none"):
        self.size = size
        self.resize = storage_size(augment, size)
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = _to_float(images, self.mean.to(images.device), self.std.to(images.device))
        if x.shape[-2:] != (self.resize, self.resize):
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", antialias=True,
                              align_corners=False)
        if self.resize != self.size:
            top = (self.resize - self.size) // 2
            x = x[..., top:top + self.size, top:top + self.size]
        return x


@dataclass
class _Params:
    translate: float = 0.0
    scale: tuple[float, float] | None = None
    hflip: bool = False
    vflip: bool = False
    degrees: float = 0.0
    cutout: float = 0.0


class TrainTransform:
    """Random per-image augmentation of a batch; randomness from `generator` (CPU) so it is
    reproducible and its state can be checkpointed."""

    def __init__(self, size: int, mean, std, augment: str, generator: torch.Generator):
        self.size = size
        self.augment = augment
        self.params = _Params(**PRESETS[augment])
        self.eval = EvalTransform(size, mean, std, augment)
        self.generator = generator

    def _uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=self.generator) * (high - low) + low

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        p = self.params
        if not (p.translate or p.scale or p.hflip or p.vflip or p.degrees or p.cutout):
            return self.eval(images)
        b = images.shape[0]
        if p.scale is None:
            x = self.eval(images)  # warp the eval view: translations of the center crop
            sw = sh = torch.ones(b)
            cx = torch.round(self._uniform(b, -p.translate, p.translate) * self.size) * 2 / self.size
            cy = torch.round(self._uniform(b, -p.translate, p.translate) * self.size) * 2 / self.size
        else:  # RandomResizedCrop: area fraction in scale, log-uniform aspect ratio in [3/4, 4/3]
            x = _to_float(images, self.eval.mean.to(images.device), self.eval.std.to(images.device))
            area = self._uniform(b, *p.scale)
            ratio = torch.exp(self._uniform(b, math.log(3 / 4), math.log(4 / 3)))
            sw = torch.sqrt(area * ratio).clamp(max=1.0)
            sh = torch.sqrt(area / ratio).clamp(max=1.0)
            cx = self._uniform(b, -1, 1) * (1 - sw)
            cy = self._uniform(b, -1, 1) * (1 - sh)
        angle = self._uniform(b, -p.degrees, p.degrees) * math.pi / 180
        fx = torch.where(torch.rand(b, generator=self.generator) < 0.5, -1.0, 1.0) if p.hflip else torch.ones(b)
        fy = torch.where(torch.rand(b, generator=self.generator) < 0.5, -1.0, 1.0) if p.vflip else torch.ones(b)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack([
            torch.stack([sw * cos * fx, -sw * sin * fy, cx], dim=1),
            torch.stack([sh * sin * fx, sh * cos * fy, cy], dim=1),
        ], dim=1).to(x.device, x.dtype)
        grid = F.affine_grid(theta, [b, x.shape[1], self.size, self.size], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if p.cutout:
            side = p.cutout * self.size
            centre_y = (self._uniform(b, 0, self.size)).to(x.device).view(b, 1, 1)
            centre_x = (self._uniform(b, 0, self.size)).to(x.device).view(b, 1, 1)
            coords = torch.arange(self.size, device=x.device, dtype=torch.float32) + 0.5
            inside = ((coords.view(1, -1, 1) - centre_y).abs() < side / 2) & \
                     ((coords.view(1, 1, -1) - centre_x).abs() < side / 2)
            x = x.masked_fill(inside.unsqueeze(1), 0.0)
        return x


# --- The per-image PIL reference path (data_path=pil): the same presets with torchvision's
# transforms, applied to one PIL image at a time in DataLoader workers.


class _Cutout:
    """Zero (the mean, after normalising) a random side x side square of a tensor image."""

    def __init__(self, side: int):
        self.side = side

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        top, left = max(0, cy - self.side // 2), max(0, cx - self.side // 2)
        x = x.clone()
        x[..., top:cy + (self.side + 1) // 2, left:cx + (self.side + 1) // 2] = 0
        return x


class PilEvalTransform:
    def __init__(self, size: int, mean, std, augment: str = "none"):
        from torchvision import transforms as T

        self.pipeline = T.Compose([T.Resize(storage_size(augment, size)), T.CenterCrop(size), T.ToTensor(),
                                   T.Normalize(mean, std)])

    def __call__(self, image) -> torch.Tensor:
        return self.pipeline(image)


class PilTrainTransform:
    def __init__(self, size: int, mean, std, augment: str):
        from torchvision import transforms as T

        p = _Params(**PRESETS[augment])
        steps: list = []
        if p.scale is not None:
            steps.append(T.RandomResizedCrop(size, scale=p.scale))
        else:
            steps += [T.Resize(storage_size(augment, size)), T.CenterCrop(size)]
            if p.translate:
                fill = tuple(int(255 * m) for m in mean)
                steps.append(T.RandomCrop(size, padding=round(p.translate * size), fill=fill))
        if p.hflip:
            steps.append(T.RandomHorizontalFlip())
        if p.vflip:
            steps.append(T.RandomVerticalFlip())
        if p.degrees:
            steps.append(T.RandomRotation(p.degrees))
        steps += [T.ToTensor(), T.Normalize(mean, std)]
        if p.cutout:
            steps.append(_Cutout(round(p.cutout * size)))
        self.pipeline = T.Compose(steps)

    def __call__(self, image) -> torch.Tensor:
        return self.pipeline(image)
