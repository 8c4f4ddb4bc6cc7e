"""The words a training run reports, each named once.

`trainer.train` reports one dict per epoch with these keys (the test keys only after the
last epoch). The sweep stores them in each trial's `result.json`, TensorBoard logs them under
`tag`, the run reader keeps them as columns of the per-epoch history, `sweep train` prints the
ones with a `column`, and a preset may rank trials by the ones with a `rank`. Adding a metric
is one line here; `tests/test_train.py` fails when the trainer reports a key this list lacks.

Imports nothing: the driver, the trial actors and the readers all use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Metric:
    name: str  # the key in the trainer's per-epoch dict and in result.json
    label: str  # words for plots and reports
    rank: str = ""  # "max" / "min": a preset may rank its trials by it, best is that end; "": never ranked
    tag: str = ""  # TensorBoard tag (grouped by what comes before the '/'); "": not logged
    column: str = ""  # header in `sweep train`'s epoch table; "": not shown there
    fmt: str = ".4f"  # how that table and the reports print a value


EPOCH_METRICS = (
    Metric("epoch", "epoch", column="epoch", fmt="d"),  # 1-based, counted over both phases
    Metric("phase", "phase", fmt="d"),  # 1: whole network (or head only while head_epochs last); 2: fine-tuning
    Metric("epoch_lr", "learning rate at the epoch's start", tag="learning_rate", column="lr", fmt=".3g"),
    # the other values an epoch trained with (trainer.config.MUTABLE): epoch_values and PBT change them
    Metric("epoch_weight_decay", "weight decay of the epoch", fmt=".3g"),
    Metric("epoch_momentum", "momentum of the epoch", fmt=".3g"),
    Metric("epoch_label_smoothing", "label smoothing of the epoch", fmt=".3g"),
    Metric("train_loss", "train loss", "min", "loss/train", "train_loss"),  # mean over the epoch's batches
    Metric("train_acc", "train accuracy", "max", "accuracy/train", "train_acc"),  # of augmented images
    Metric("val_acc", "validation accuracy", "max", "accuracy/val", "val_acc"),
    Metric("val_loss", "validation loss", "min", "loss/val", "val_loss"),
    Metric("val_top5", "validation top-5 accuracy", "max", "accuracy/val_top5"),  # more than 5 classes only
    Metric("test_loss", "test loss", tag="loss/test"),  # last epoch only; never ranked: the test split stays unseen
    Metric("test_acc", "test accuracy", tag="accuracy/test"),
    Metric("test_top5", "test top-5 accuracy", tag="accuracy/test_top5"),
    Metric("images_per_s", "training images per second", tag="throughput/images_per_s", column="img/s", fmt=".0f"),
    Metric("train_time_s", "seconds of training steps"),
    Metric("epoch_time_s", "seconds per epoch, evaluation included", tag="time/epoch_s", column="sec", fmt=".1f"),
    Metric("finished_at", "wall-clock time the epoch ended", fmt=".0f"),  # orders concurrent trials' epochs
    # the model's cost (trainer.cost), with the first epoch a run trains: they do not depend on the weights
    Metric("params", "parameters", "min", fmt=".3g"),
    Metric("gflops", "GFLOPs per image (forward)", "min", fmt=".3g"),
    Metric("latency_ms", "inference ms per image at batch 1", "min", fmt=".3g"),
    Metric("infer_img_s", "inference images per second at batch 64", "max", fmt=".0f"),
    Metric("peak_rss_mb", "peak resident memory of the trial's process, MiB", fmt=".0f"),  # added by a sweep trial
    # added by a sweep trial under population-based training, once it has taken another's weights:
    # "EPOCH:TRIAL;..." (the weights after epoch EPOCH came from trial TRIAL), oldest first
    Metric("lineage", "whose weights the trial took, after which epoch"),
)
BY_NAME = {m.name: m for m in EPOCH_METRICS}
COST = ("params", "gflops", "latency_ms", "infer_img_s")  # of the model, not of an epoch: a trial has one each
# what a preset's `metric` may name (ASHA ranks epochs by it), validation first: ranking on the
# training split rewards overfitting
RANKED = tuple(sorted((m.name for m in EPOCH_METRICS if m.rank and m.name not in COST),
                      key=lambda name: not name.startswith("val_")))
# what a preset's `objectives` may name: the ranked metrics and the model's cost
OBJECTIVES = (*RANKED, *COST)
# Names that older run folders wrote, read as today's.
FORMER_NAMES = {"lr": "epoch_lr"}


def rank_mode(name: str) -> str:
    """"max" or "min": which end of a ranked metric is best."""
    return BY_NAME[name].rank


def current_names(row: dict) -> dict:
    """A result row with older names read as today's (an older run folder stays readable)."""
    if not any(old in row for old in FORMER_NAMES):
        return row
    return {FORMER_NAMES.get(k, k) if FORMER_NAMES.get(k) not in row else k: v for k, v in row.items()}


def sign(mode: str) -> float:
    """+1 where "max" is best, -1 where "min" is: `sign * value` is larger for a better value."""
    return 1.0 if mode == "max" else -1.0


def direction(mode: str) -> Literal["maximize", "minimize"]:
    """A mode as Optuna names it: "maximize" or "minimize"."""
    return "maximize" if mode == "max" else "minimize"
