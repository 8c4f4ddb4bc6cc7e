"""resweep's trainer: pure PyTorch, no Ray. `train(config, report=callback) -> metrics`.

The names below load on first use (PEP 562), so that `trainer.config` or `trainer.files`
alone does not import torch: the CLI's quick commands and the run-folder readers stay light."""

from importlib import import_module

_HOMES = {
    "TrainConfig": "config", "ConfigError": "config", "apply_overrides": "config", "from_dict": "config",
    "DataError": "errors", "load_data": "datasets",
    "TrainerError": "errors",
    "DivergedError": "loop", "OutOfMemory": "loop", "TrialHalted": "loop", "evaluate": "loop",
    "load_model": "loop", "train": "loop",
}
__all__ = list(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'trainer' has no attribute {name!r}")
    return getattr(import_module(f".{_HOMES[name]}", __name__), name)
