"""A trial's checkpoint as analysis uses it: the trained model, its training config, and the data
it trained on. The report, Grad-CAM, export and predict all load a checkpoint through here, so
there is one place that knows a checkpoint's layout and where its data lives."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from sweeps.runfolder.layout import CHECKPOINT_DIR
from sweeps.runfolder.storage import join, list_folder, local_folder, split_name
from trainer.checkpoint import load_checkpoint
from trainer.config import TrainConfig
from trainer.data import DataBundle
from trainer.datasets import load_data
from trainer.errors import CheckpointError
from trainer.loop import eval_loader, load_model, predict


@dataclass(frozen=True)
class Trained:
    """A checkpoint loaded on the CPU: the model in eval mode and float32, and what it was
    trained with."""
    model: nn.Module
    config: TrainConfig
    classes: list[str]
    mean: tuple[float, ...]  # per input channel
    std: tuple[float, ...]
    checkpoint: str  # the folder or URI it came from

    @property
    def channels(self) -> int:
        return len(self.mean)

    def data(self, data_dir: Path | None = None) -> DataBundle:
        """The data set the trial trained on; `data_dir` where it is somewhere else here than
        where the trial ran. DataError where it cannot be read."""
        config = self.config if data_dir is None else dataclasses.replace(self.config, data_dir=str(data_dir))
        return load_data(config)


def load_trained(checkpoint: str) -> Trained:
    """The checkpoint at `checkpoint` (a folder or a URI). CheckpointError where it is missing or
    damaged."""
    with local_folder(checkpoint) as folder:
        state = load_checkpoint(folder, map_location="cpu")
    model, config, state = load_model(state, device="cpu")
    model = model.to(memory_format=torch.contiguous_format).float().eval()
    return Trained(model, config, list(state["classes"]), tuple(state["mean"]), tuple(state["std"]), checkpoint)


def load_kept(checkpoint: str) -> Trained:
    """`load_trained` of `checkpoint`, or where it does not load, of the trial's other kept
    checkpoints (newest first), each failure said on stderr; `.checkpoint` names the one used."""
    trial, name = split_name(checkpoint)
    others = sorted((n for n, is_dir in list_folder(trial) if is_dir and CHECKPOINT_DIR.match(n) and n != name),
                    reverse=True)
    candidates = [checkpoint, *(join(trial, n) for n in others)]
    for i, candidate in enumerate(candidates):
        try:
            return load_trained(candidate)
        except CheckpointError as err:
            last = i + 1 == len(candidates)
            instead = "no other checkpoint of the trial is kept" if last else "trying the trial's next kept checkpoint"
            logging.getLogger("resweep").warning(f"{err}; {instead}")
            if last:
                raise
    raise CheckpointError(f"{checkpoint}: no checkpoint")  # not reached: the list holds `checkpoint`


@dataclass
class TestEvaluation:
    """A trained model evaluated on its run's test split."""
    model: nn.Module
    classes: list[str]
    mean: tuple
    std: tuple
    inputs: torch.Tensor  # the model's input of every test image (normalised, eval transform)
    labels: np.ndarray
    logits: torch.Tensor
    counts: pd.DataFrame  # images per class and split

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(1).numpy()

    @property
    def accuracy(self) -> float:
        return float((self.predictions == self.labels).mean())

    @property
    def loss(self) -> float:
        return float(F.cross_entropy(self.logits, torch.from_numpy(self.labels)).item())


def evaluate_on_test(trained: Trained, device: torch.device, data_dir: Path | None = None) -> TestEvaluation:
    """The model on its run's test split, on `device`."""
    data = trained.data(data_dir)
    config = dataclasses.replace(trained.config, device=device.type)
    loader = eval_loader(data.test, config, data, device)
    model = trained.model.to(device)
    logits = predict(model, loader, config, device)
    inputs = torch.cat([x.cpu() for x, _ in loader]) if len(data.test) else torch.zeros(0)
    counts = pd.DataFrame({name: np.bincount(split.labels.numpy(), minlength=len(data.classes))
                           for name, split in (("train", data.train), ("val", data.val), ("test", data.test))},
                          index=data.classes)
    return TestEvaluation(model.float().eval(), list(data.classes), data.mean, data.std, inputs,
                          data.test.labels.numpy(), logits, counts)
