"""The worker side of a sweep: what runs inside a Ray Tune trial actor. Kept apart from
`sweeps.engine.driver` (the driver side) so that a trial actor imports only torch, Ray Tune's
reporting API and the trainer, not Optuna, the search wiring or pandas' readers.

A trial keeps its own checkpoints, in its folder of the run (`trial_<id>/checkpoint_<epoch>/`,
on a local disk or behind a URI), written there by the trial itself after every epoch; the
newest and the best are kept, and an older one is deleted only once the newer one is
complete. On every start (the first, a retry after a crash or a lost node, a resumed
sweep) the trial goes on from its newest checkpoint, and first reports again the epochs
that checkpoint holds (rows marked `replayed`), so that Ray Tune's scheduler and the run's
result files see every epoch, whatever Tune's own snapshot of the sweep knew when its
driver died. Tune's checkpoints are not used: Tune deletes an old one before the snapshot
naming its successor is stored, and a driver killed in between left a trial that could
not be resumed.

Where the node's cloud gives notice that it takes the node back (`sweeps.engine.notice`), the trial
drains the node in Ray (no trial is placed there again, and Ray counts what dies there as
preempted), writes the checkpoint of the epoch it is in and then leaves the node by raising
`NodeReclaimed`, which the driver does not count against the trial's retries: it goes on
elsewhere with no epoch trained twice.
"""

from __future__ import annotations

import os
import resource
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from sweeps.engine.notice import Notice, NoticeWatcher, notice_url
from sweeps.runfolder.layout import CHECKPOINT_DIR, CHECKPOINT_KEY, checkpoint_name
from sweeps.runfolder.storage import (
    StoreError,
    delete,
    is_uri,
    join,
    list_folder,
    local_folder,
    store_wait_s,
    upload_file,
)
from trainer.checkpoint import CHECKPOINT_FILE, load_checkpoint
from trainer.config import from_dict
from trainer.data import DataBundle
from trainer.datasets import data_key, load_data
from trainer.errors import CheckpointError
from trainer.loop import TrialHalted, train
from trainer.metrics import COST
from trainer.metrics import sign as metric_sign

# Under a notice, a checkpoint that cannot be stored is tried until this long before the deadline.
NOTICE_MARGIN_S = 10.0

# Datasets loaded in this worker process, by the config values they depend on: a reused
# trial actor trains its next trial on the same tensors without reloading them.
_DATA: dict[tuple, DataBundle] = {}


class NodeReclaimed(Exception):
    """The trial leaves a node its cloud is taking back, its newest epoch stored: a move, not an
    error (`sweeps.engine.driver` does not count it against the trial's retries)."""


def drain_node(node_id: str, notice: Notice) -> None:
    """Tell Ray that the node goes at the notice's deadline: nothing new is placed there, and
    the actors that die there count as preempted. Many trials of a node may ask; one is enough."""
    from ray.core.generated import autoscaler_pb2

    # Ray's generated protobuf module and its GCS client come without type information
    reason = autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_PREEMPTION")  # type: ignore[attr-defined]
    try:
        ray._private.worker.global_worker.gcs_client.drain_node(  # type: ignore[attr-defined]
            node_id, reason, f"cloud notice ({notice.action}) from {notice.source}", int(notice.deadline * 1000),
            timeout=5)
    except Exception as err:  # the trial moves all the same; the node may only take one more trial first
        print(f"warning: could not drain node {node_id[:8]} ({err})", flush=True)


class TrialFolder:
    """A trial's folder in the run (the one Tune writes its results to): its checkpoints, one
    per kept epoch."""

    def __init__(self, run_path: str, name: str):
        self.path = join(run_path, name)

    def epochs(self, wait: float | None = None) -> list[int]:
        """Epochs with a complete checkpoint here, oldest first (a checkpoint file is written
        whole or not at all: renamed into place, or one object put). `wait`: how long a store
        that is away is waited for (the store window by default)."""
        found = []
        for name, is_dir in list_folder(self.path, wait):
            match = CHECKPOINT_DIR.match(name)
            if is_dir and match and any(n == CHECKPOINT_FILE for n, _ in list_folder(join(self.path, name), wait)):
                found.append(int(match.group(1)))
        return sorted(found)

    def load_newest(self) -> dict[str, Any] | None:
        """The newest checkpoint that loads; None when there is none."""
        for epoch in reversed(self.epochs()):
            try:
                with local_folder(join(self.path, checkpoint_name(epoch))) as folder:
                    return load_checkpoint(folder)
            except (CheckpointError, FileNotFoundError):
                continue  # unreadable: the one before it (a store that stays away raises: never a fresh start)
        return None

    def write(self, epoch: int, save: Callable[[Path], Path], wait: float | None = None) -> str:
        """Write the checkpoint of `epoch` here; returns its folder name. Behind a URI a store that
        is away is waited for `wait` seconds at most (the store window by default; StoreError after)."""
        name = checkpoint_name(epoch)
        target = join(self.path, name)
        if not is_uri(target):
            save(Path(target))  # the trainer writes a temporary file and renames it into place
            return name
        with tempfile.TemporaryDirectory() as folder:
            file = save(Path(folder))
            window = store_wait_s()
            upload_file(file, join(target, CHECKPOINT_FILE), wait=window if wait is None else min(wait, window))
        return name

    def remove(self, epoch: int, wait: float | None = None) -> None:
        delete(join(self.path, checkpoint_name(epoch)), folder=True, wait=wait)

    def prune(self, keep: set[int]) -> None:
        """Delete the checkpoints of every epoch but `keep`."""
        for epoch in self.epochs():
            if epoch not in keep:
                delete(join(self.path, checkpoint_name(epoch)), folder=True)


def best_epoch(history: list[dict[str, Any]], epochs: list[int], metric: str, mode: str) -> int | None:
    """Of `epochs`, the one whose `metric` in `history` is best (the latest of equals)."""
    values = {int(row["epoch"]): row[metric] for row in history if row.get(metric) is not None}
    candidates = [e for e in epochs if e in values]
    if not candidates:
        return None
    sign = metric_sign(mode)
    return max(candidates, key=lambda e: (sign * values[e], e))


def lineage_text(lineage: list) -> str:
    """A checkpoint's lineage ([epoch, trial] pairs) as result rows carry it: "EPOCH:TRIAL;..."."""
    return ";".join(f"{int(epoch)}:{trial}" for epoch, trial in lineage)


def run_trial(params: dict[str, Any], base: dict[str, Any], metric: str, mode: str, run_path: str,
              mutable: tuple[str, ...] = ()) -> None:
    """One Tune trial: train the preset's config with the sampled `params`, reporting every epoch.
    `mutable` names the keys population-based training changes (sweeps.engine.population): their
    values are the newest checkpoint's, which an exploit wrote with the donor's weights, not the
    ones the trial was sampled with."""
    config = from_dict(params, base=from_dict(base))
    cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    key = data_key(config)
    if key not in _DATA:
        _DATA.clear()  # keep one dataset per process
        _DATA[key] = load_data(config)

    node_id = ray.get_runtime_context().get_node_id()
    folder = TrialFolder(run_path, os.path.basename(tune.get_context().get_trial_dir().rstrip("/")))
    state = folder.load_newest()
    history: list[dict[str, Any]] = list(state["history"]) if state else []
    if state is not None and mutable:
        config = from_dict({k: state["config"][k] for k in mutable if k in state["config"]}, base=config)
    lineage = lineage_text(state.get("lineage", [])) if state else ""

    cost: dict[str, Any] = {}

    def send(metrics: dict[str, Any]) -> None:
        # the model's cost comes with the first epoch; every later report carries it too, so that a
        # search with cost objectives finds it in a trial's last report
        cost.update({k: metrics[k] for k in COST if k in metrics})
        metrics.update({k: v for k, v in cost.items() if k not in metrics})
        metrics["node_id"] = node_id  # node_ip is the same for every node of a one-machine cluster
        if lineage:
            metrics["lineage"] = lineage
        metrics["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        tune.report(metrics)

    def heard(notice: Notice) -> None:  # in the watcher's thread, while the epoch trains on
        print(f"notice: node {node_id[:8]} is taken back in {notice.seconds_left():.0f} s ({notice.action}); "
              f"this trial stores the epoch it is in and moves", flush=True)
        drain_node(node_id, notice)

    kept = set(folder.epochs())
    for row in history:  # the epochs this trial trained before: Tune and the result files see them again
        send({**row, CHECKPOINT_KEY: checkpoint_name(int(row["epoch"])) if int(row["epoch"]) in kept else None,
              "replayed": True})

    def report(metrics: dict[str, Any], save: Callable[[Path], Path]) -> None:
        epoch = int(metrics["epoch"])
        history.append(dict(metrics))
        # A store that is away is waited for (the store window): the trial never trains an epoch
        # past its newest stored one, so a node lost during an outage costs one epoch, not the outage.
        notice = watcher.heard if watcher else None
        try:
            metrics[CHECKPOINT_KEY] = folder.write(
                epoch, save, wait=max(1.0, notice.seconds_left() - NOTICE_MARGIN_S) if notice else None)
        except StoreError as err:
            if notice and err.transient:
                raise NodeReclaimed(f"node {node_id[:8]} is taken back ({notice.action}) and epoch {epoch} could "
                                    f"not be stored ({err})") from None
            raise
        kept.add(epoch)
        keep = {epoch, best_epoch(history, sorted(kept), metric, mode) or epoch}
        try:
            folder.prune(keep)
            kept.intersection_update(keep)
        except StoreError as err:
            if not err.transient:
                raise  # older checkpoints stay until a later epoch's prune
        send(metrics)
        if notice and epoch < config.epochs:
            raise NodeReclaimed(f"node {node_id[:8]} is taken back ({notice.action}, notice from {notice.source}); "
                                f"epoch {epoch} is stored")

    url = notice_url()
    watcher = NoticeWatcher(url, on_notice=heard).start() if url else None  # stopped below, whatever happens
    try:
        train(config, report=report, resume_from=state, data=_DATA[key])
    except TrialHalted as err:
        # recorded, not retried: the same configuration would diverge (or run out of memory) again
        metrics = dict(err.metrics, failure=err.kind, error=str(err))
        metrics["epoch"] = int(history[-1]["epoch"]) if history else 0  # the failed epoch is no epoch trained
        metrics[metric] = 1e12 if mode == "min" else metrics.get(metric, 0.0)
        send(metrics)
    finally:
        if watcher:
            watcher.stop()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # a reused actor hands a clean GPU to its next trial
