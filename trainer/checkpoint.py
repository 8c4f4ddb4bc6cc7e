"""Checkpoints: one flat dict of tensors and plain data, written atomically, read with
`torch.load(weights_only=True)` so a checkpoint can never run code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .files import atomic_write_bytes

CHECKPOINT_FILE = "checkpoint.pt"


def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
    atomic_write_bytes(Path(path), lambda f: torch.save(state, f))
    return Path(path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    return torch.load(path, map_location=map_location, weights_only=True)
