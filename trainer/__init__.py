"""resweep's trainer: pure PyTorch, no Ray. `train(config, report=callback) -> metrics`."""

from .config import ConfigError, TrainConfig, apply_overrides, from_dict
from .data import DataError, load_data
from .models import TrainerError
from .loop import DivergedError, OutOfMemory, TrialHalted, evaluate, load_model, train

__all__ = ["TrainConfig", "ConfigError", "DataError", "TrainerError", "DivergedError", "OutOfMemory", "TrialHalted",
           "from_dict",
           "apply_overrides", "load_data", "train", "evaluate", "load_model"]
