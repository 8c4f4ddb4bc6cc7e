"""Where users already watch training: TensorBoard (always: every trial's folder gets event
files), MLflow and Weights & Biases (optional extras, switched on per sweep). Ray Tune's own
logger callbacks do the work; resweep only chooses what is logged and at which step: the
trainer's per-epoch metrics under stable names, at step = epoch (Tune's training_iteration
starts again at 1 when a trial restarts from its checkpoint), so the curves of a resumed
trial continue where they were.
"""

from __future__ import annotations

import math
from typing import Any

from ray.air.constants import TRAINING_ITERATION
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.air.integrations.wandb import WandbLoggerCallback, _WandbLoggingActor
from ray.tune.logger import TBXLoggerCallback

from sweeps.errors import SweepError
from trainer.metrics import EPOCH_METRICS

# result key -> TensorBoard tag (trainer.metrics names both)
TENSORBOARD_TAGS = {m.name: m.tag for m in EPOCH_METRICS if m.tag}
EXTRAS = {"mlflow": "mlflow", "wandb": "wandb"}


def epoch_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The trainer's per-epoch metrics in a Tune result, finite numbers only."""
    return {key: float(result[key]) for key in TENSORBOARD_TAGS
            if isinstance(result.get(key), (int, float)) and math.isfinite(result[key])}


class TensorBoardLogger(TBXLoggerCallback):
    """Event files in each trial's folder (`tensorboard --logdir RUN`): the tags of
    TENSORBOARD_TAGS at step = epoch, and the trial's parameters in the HParams view."""

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if result.get("failure") or "epoch" not in result:
            return
        if trial not in self._trial_writer:
            self.log_trial_start(trial)
        writer, epoch = self._trial_writer[trial], int(result["epoch"])
        metrics = epoch_metrics(result)
        for key, value in metrics.items():
            writer.add_scalar(TENSORBOARD_TAGS[key], value, global_step=epoch)
        self._trial_result[trial] = {TENSORBOARD_TAGS[k]: v for k, v in metrics.items()}
        writer.flush()


def require_extra(name: str) -> None:
    """One line naming the pip command when an optional integration is not installed."""
    import importlib.util

    if importlib.util.find_spec(EXTRAS[name]) is None:
        raise SweepError(f"--{name} needs the {name} package: pip install -e '.[{name}]' (or pip install {name})")


class MLflowLogger(MLflowLoggerCallback):
    """One MLflow run per trial in the experiment named after the sweep, with its parameters
    and its per-epoch metrics at step = epoch."""

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if result.get("failure") or "epoch" not in result:
            return
        self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=epoch_metrics(result),
                                     step=int(result["epoch"]))


class _TornDownLoggingActor(_WandbLoggingActor):
    """Tune's W&B logging actor, which shuts W&B down before its run returns. W&B's service
    writes a run's records as it closes the run's stream (wandb.teardown, else an atexit hook),
    and Tune kills the actor the moment its run returns: a short trial's offline run file could
    be left with its header alone (seen in CI)."""

    def run(self):
        try:
            super().run()
        finally:
            self._wandb.teardown()


class WandbLogger(WandbLoggerCallback):
    """One W&B run per trial in the project, grouped by the sweep's name: the trainer's metrics
    with their epoch, without Tune's bookkeeping."""

    _logger_actor_cls = _TornDownLoggingActor

    def setup(self, *args, **kwargs):
        super().setup(*args, **kwargs)
        # Tune restarts its W&B logging actors forever (max_restarts=-1), and Ray's core worker
        # then logs an error line at each one's start; a logger that dies is not restarted here.
        import os

        import ray
        from ray.air.util.node import _force_on_current_node

        env = {key: os.environ[key] for key in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR") if key in os.environ}
        self._remote_logger_class = ray.remote(num_cpus=0, **_force_on_current_node(), runtime_env={"env_vars": env},
                                               max_restarts=0)(self._logger_actor_cls)

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if result.get("failure") or "epoch" not in result:
            return
        super().log_trial_result(iteration, trial, {**epoch_metrics(result), "epoch": int(result["epoch"]),
                                                    TRAINING_ITERATION: result.get(TRAINING_ITERATION)})

    def on_experiment_end(self, trials, **info):
        """The loggers finish their runs after Tune's last copy of the trials' folders: copy
        their W&B folders to the run folder once they have (for `wandb sync` there)."""
        import os

        import pyarrow.fs

        super().on_experiment_end(trials, **info)
        for trial in trials:
            local = os.path.join(trial.local_path, "wandb")
            if os.path.isdir(local):
                pyarrow.fs.copy_files(local, f"{trial.storage.trial_fs_path}/wandb",
                                      destination_filesystem=trial.storage.storage_filesystem)


CHECK_TIMEOUT_S = 5.0  # a tracker must answer a check within this many seconds


def check_trackers(plan, resume: bool = False, without: bool = False) -> None:
    """Before a sweep starts (or resumes), make sure the trackers it logs to answer, in
    seconds: a tracking client retries for minutes inside the driver's loop, and a resumed
    sweep would meet the same wall. One line naming the tracker and the fix otherwise."""
    if without:
        return
    drop = f"or resume without it: `sweep resume {plan.path} --no-trackers`" if resume else "or drop the option"
    if plan.mlflow:
        require_extra("mlflow")
        problem = mlflow_problem(plan.mlflow)
        if problem:
            raise SweepError(f"--mlflow {plan.mlflow}: {problem}; {drop}")
    if plan.wandb:
        require_extra("wandb")
        problem = wandb_problem()
        if problem:
            raise SweepError(f"--wandb {plan.wandb}: {problem}; {drop}")


def mlflow_problem(uri: str, timeout: float = CHECK_TIMEOUT_S) -> str | None:
    """None when an MLflow tracking server answers at `uri` (a folder or database: can be
    written), else the reason in a few words."""
    import json
    import os
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        probe = uri.rstrip("/") + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=resweep-check"
        request = urllib.request.Request(probe)
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310 (http(s) only)
                return None
        except urllib.error.HTTPError as err:
            if err.code in (401, 403):
                return (f"the server refused us (HTTP {err.code}); set MLFLOW_TRACKING_TOKEN or "
                        f"MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
            try:
                body = json.loads(err.read() or b"{}")
            except ValueError:
                body = {}
            if err.code == 404 and body.get("error_code") == "RESOURCE_DOES_NOT_EXIST":
                return None  # an MLflow server that has no such experiment: it answers
            return f"it answers HTTP {err.code}, not as an MLflow tracking server does; check the address"
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, ConnectionRefusedError):
                return f"nothing listens at {parts.netloc}; start the server (`mlflow server`) or fix the address"
            if isinstance(reason, TimeoutError) or "timed out" in str(reason):
                return f"no answer within {timeout:g} s; check the address and the network"
            return f"cannot reach it ({reason}); check the address and the network"
        except (TimeoutError, OSError) as err:
            return f"no answer within {timeout:g} s ({type(err).__name__}); check the address and the network"
    if parts.scheme in ("", "file", "sqlite"):
        path = parts.path if parts.scheme else uri
        folder = os.path.dirname(path) if parts.scheme == "sqlite" else path
        folder = folder or "."
        existing = folder
        while existing and not os.path.exists(existing):
            existing = os.path.dirname(existing.rstrip("/")) or "."
        if os.path.exists(existing) and not os.path.isdir(existing):
            return f"{existing} is a file, not a folder; give a folder or a server's http:// address"
        if not os.access(existing, os.W_OK):
            return f"{existing} cannot be written; give a writable folder or a server's http:// address"
    return None


def wandb_problem(timeout: float = CHECK_TIMEOUT_S) -> str | None:
    """None when W&B can log (offline mode, or credentials and a reachable server), else why."""
    import netrc
    import os
    import socket
    from urllib.parse import urlsplit

    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return None
    base = urlsplit(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    host = base.hostname or "api.wandb.ai"
    key = os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE")
    if not key:
        path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
        try:
            key = (netrc.netrc(path).authenticators(host) or (None, None, None))[2]
        except (OSError, netrc.NetrcParseError):
            key = None
    if not key:
        return (f"not logged in to W&B at {host}; run `wandb login`, set WANDB_API_KEY, or WANDB_MODE=offline to "
                f"log to local files")
    port = base.port or (443 if base.scheme != "http" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        return f"cannot reach {host}:{port} ({err.strerror or type(err).__name__}); check the network, or set " \
               f"WANDB_MODE=offline"
    return None


def tracking_callbacks(plan) -> list:
    """The logger callbacks of a sweep: TensorBoard always, MLflow and W&B where the plan asks."""
    import logging

    callbacks: list = [TensorBoardLogger()]
    if plan.mlflow:
        require_extra("mlflow")
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # not its INFO lines on creating its tables
        callbacks.append(MLflowLogger(plan.mlflow, experiment_name=plan.name,
                                      tags={"resweep.sweep": plan.name, "resweep.preset": plan.preset}))
    if plan.wandb:
        require_extra("wandb")
        callbacks.append(WandbLogger(project=plan.wandb, group=plan.name))
    return callbacks
