import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """No test reads or writes the user's caches: data and torch hub go under tmp_path."""
    monkeypatch.setenv("RESWEEP_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RESWEEP_STORAGE", raising=False)


def tiny(**overrides):
    """A config that trains in a fraction of a second on the CPU."""
    from trainer.config import TrainConfig, from_dict

    values = dict(dataset="synthetic", synthetic_samples=120, synthetic_classes=4, image_size=16, model="resnet9",
                  width=4, epochs=2, batch_size=16, device="cpu", lr=0.05, scheduler="constant")
    values.update(overrides)
    return from_dict(values, base=TrainConfig())
