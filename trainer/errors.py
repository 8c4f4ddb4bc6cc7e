"""The errors a training run raises for a reason the user can fix, each with a one-line message.
Imports nothing heavy: the sweep's driver and the readers catch them without importing torch."""

from __future__ import annotations

import pickle


class TrainerError(RuntimeError):
    """A run cannot go on for a reason the user can fix (a model, weights or device problem)."""


class CheckpointError(TrainerError):
    """A checkpoint file is missing, cut short or not a checkpoint; the message names the file."""


class UnsafeCheckpoint(CheckpointError, pickle.UnpicklingError):
    """A checkpoint holding code or objects beyond tensors and plain data: refused, never run."""


class DataError(RuntimeError):
    """Data is missing or unreadable; the message names the path and the fix."""


# How a halted trial's last result names its failure (`failure` key); retrying would fail the same way.
DIVERGED = "diverged"  # the loss became NaN or infinite
OUT_OF_MEMORY = "out of memory"  # the GPU ran out of memory at this batch size
