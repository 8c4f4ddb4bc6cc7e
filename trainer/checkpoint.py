"""Checkpoints: one flat dict of tensors and plain data, written atomically, read with
`torch.load(weights_only=True)` so a checkpoint can never run code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, UnsafeCheckpoint
from .files import atomic_write_bytes

CHECKPOINT_FILE = "checkpoint.pt"


def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
    atomic_write_bytes(Path(path), lambda f: torch.save(state, f))
    return Path(path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint at `path` (the file or its folder). CheckpointError (one line naming the
    file) where it is missing, cut short or not a checkpoint; pickle.UnpicklingError where it
    holds anything but tensors and plain data (it is never run)."""
    import pickle

    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint; give a {CHECKPOINT_FILE} or its folder") from None
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):  # code or objects inside: refused, never run
            raise UnsafeCheckpoint(f"{path}: refused: it holds code or objects, not only weights (Weights only "
                                   f"load failed); load checkpoints only from runs you trust") from None
        raise CheckpointError(f"{path}: damaged checkpoint ({str(err).splitlines()[0][:80]})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: damaged or cut-short checkpoint ({str(err).splitlines()[0][:80]})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a checkpoint of resweep's trainer (no model weights in it)")
    return state
