"""The worker side of a sweep: what runs inside a Ray Tune trial actor. Kept apart from
`sweeps.tune` (the driver side) so that a trial actor imports only torch, Ray Tune's
reporting API and the trainer, not Optuna, the search wiring or pandas' readers."""

from __future__ import annotations

import resource
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune
from ray.tune import Checkpoint

from trainer.checkpoint import load_checkpoint
from trainer.config import from_dict
from trainer.data import DataBundle, data_key, load_data
from trainer.loop import TrialHalted, train

# Datasets loaded in this worker process, by the config values they depend on: a reused
# trial actor trains its next trial on the same tensors without reloading them.
_DATA: dict[tuple, DataBundle] = {}


def run_trial(params: dict[str, Any], base: dict[str, Any], metric: str, mode: str) -> None:
    """One Tune trial: train the preset's config with the sampled `params`, reporting every epoch."""
    config = from_dict(params, base=from_dict(base))
    cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    key = data_key(config)
    if key not in _DATA:
        _DATA.clear()  # keep one dataset per process
        _DATA[key] = load_data(config)

    node_id = ray.get_runtime_context().get_node_id()

    def report(metrics: dict, save) -> None:
        metrics["node_id"] = node_id  # node_ip is the same for every node of a one-machine cluster
        metrics["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with tempfile.TemporaryDirectory() as folder:
            save(Path(folder))
            tune.report(metrics, checkpoint=Checkpoint.from_directory(folder))

    state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retry after a crash, or a resumed sweep
        with checkpoint.as_directory() as folder:
            state = load_checkpoint(Path(folder))
    try:
        train(config, report=report, resume_from=state, data=_DATA[key])
    except TrialHalted as err:
        # recorded, not retried: the same configuration would diverge (or run out of memory) again
        metrics = dict(err.metrics, failure=err.kind, error=str(err), node_id=node_id)
        metrics[metric] = 1e12 if mode == "min" else metrics.get(metric, 0.0)
        tune.report(metrics)
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # a reused actor hands a clean GPU to its next trial
