"""A lost node is a move, not an error: the driver's rule for what counts against a trial's
retries (`FailureConfig.max_failures`).

Ray Tune counts every failed try of a trial, except an actor that died on a node Ray itself
drained as preempted. On a cluster of spot workers most nodes go without Ray knowing why (a
raylet gone, an instance that vanished), so a night of reclaims would use up the retries meant
for errors in the trial's code and turn good trials into ERROR. Here a try counts as a node
loss, and not against the retries, when:

- the trial left a node its cloud gave notice for (`sweeps.engine.trial.NodeReclaimed`);
- its actor died and Ray says the node was preempted, or the node is dead, or the node's
  raylet no longer answers (Ray's own health check takes seconds to see that).

A trial that met a store away for longer than the store window (`StoreError`, transient) is
not counted either: the driver ends the sweep then too, and `sweep resume` goes on. An actor
that died on a node that is still there (a segfault, the kernel's OOM killer) counts, as does
any other exception of the trial. Node losses are counted too, apart (`node_losses` in Tune's
trial state, which `sweeps.runfolder.tunestate` reads); past MAX_NODE_LOSSES a trial's losses count as
failures again, so that a trial that takes its node down with it cannot loop for ever.

One loss Tune does not recover by itself: a trial that waits to start (PENDING) is given a
cached actor of a trial that ended (`reuse_actors`), and that actor's node is gone before
the trial's `reset` reaches it. Tune marks such a trial ERROR outright, counted or not, and
keeps it among its resetting trials, so even a trial set back to PENDING would wait for that
reset for ever. Here the trial is taken out of that set and run through the recovery of a
started trial: the dead actor is removed and the trial waits for a new one.

And one loss reaches the driver twice, as the dead actor and as the failed task, in either
order. The report that comes to a trial already waiting to start again is let go (`_stale`);
the task failure of a RUNNING trial whose dead actor Tune has already let go is the one that
sends it elsewhere, and is never dropped (a trial left RUNNING with no actor stalls the sweep:
seen in chaos runs, the sweep waiting for ever with no resources requested).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError
from ray.tune.execution.tune_controller import TuneController
from ray.tune.experiment import Trial

from sweeps.engine.trial import NodeReclaimed
from sweeps.runfolder.storage import StoreError

MAX_NODE_LOSSES = 20
RAYLET_TIMEOUT_S = 2.0


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=RAYLET_TIMEOUT_S):
            return True
    except OSError:
        return False


def node_gone(node_id: str | None) -> bool:
    """Whether the Ray node `node_id` is dead, unknown, or its raylet does not answer."""
    if not node_id:
        return False
    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            return not node.get("Alive") or not _answers(node["NodeManagerAddress"], int(node["NodeManagerPort"]))
    return True


def _actor_node(actor_id: str | None) -> str | None:
    if not actor_id:
        return None
    try:
        return (ray._private.state.actors(actor_id) or {}).get("Address", {}).get("NodeID") or None
    except Exception:  # the GCS does not know it (any more)
        return None


def _cause(exc: BaseException | None) -> Any:
    if isinstance(exc, RayTaskError):
        return exc.cause if exc.cause is not None else exc.as_instanceof_cause()
    return exc


def store_away(exc: BaseException | None) -> bool:
    """Whether the failed try `exc` met a store that stayed away past the window."""
    cause = _cause(exc)
    return isinstance(cause, StoreError) and cause.transient


def node_lost(exc: BaseException | None, trial: Any = None) -> bool:
    """Whether the failed try `exc` of `trial` was a node taken away rather than an error."""
    cause = _cause(exc)
    if isinstance(cause, NodeReclaimed):
        return True
    if not isinstance(cause, RayActorError):
        return False
    if cause.preempted:
        return True
    node_id = _actor_node(getattr(cause, "actor_id", None))
    if node_id is None and trial is not None:  # the node the trial last reported from
        node_id = (getattr(trial, "last_result", None) or {}).get("node_id")
    return node_gone(node_id)


def _stale(controller: Any, trial: Any, exc: BaseException | None) -> bool:
    """Whether `exc` is a second report of a loss already handled: one loss reaches the driver
    twice, as the failed task and as the dead actor. A trial already waiting to start again
    (PENDING, no reset under way), or one that has another actor by now, has heard it. (A
    RUNNING trial whose actor Tune has already let go has not: its task's failure is the one
    report that sends it elsewhere.)"""
    if trial.status == Trial.PENDING and trial not in controller._resetting_trials:
        return True
    cause = _cause(exc)
    dead = getattr(cause, "actor_id", None) if isinstance(cause, RayActorError) else None
    actor = trial.temporary_state.ray_actor
    return bool(dead) and actor is not None and actor._actor_id.hex() != dead


@contextmanager
def only_the_trials_own_failures_counted() -> Iterator[None]:
    """While in it, Tune's trials count node losses apart from their failures, and a store away
    not at all (see above)."""
    counted = Trial.handle_error

    def handle_error(self, exc=None):
        failures = self.run_metadata.num_failures
        counted(self, exc)  # Tune's bookkeeping: the error file, the count
        if node_lost(exc, self):
            losses = getattr(self.run_metadata, "node_losses", 0) + 1
            self.run_metadata.node_losses = losses  # kept in Tune's trial state, across resumes
            if losses <= MAX_NODE_LOSSES:
                self.run_metadata.num_failures = failures
                print(f"note: trial {self.trial_id} lost its node ({losses} so far); it goes on elsewhere from its "
                      f"newest checkpoint, not counted as a failure", flush=True)
        elif store_away(exc):
            self.run_metadata.num_failures = failures

    recover = TuneController._process_trial_failure

    def process_failure(self, trial, exception):
        if node_lost(exception, trial) or store_away(exception):
            if _stale(self, trial, exception):
                return  # a second report of a loss already handled: the trial waits for its next start
            self._resetting_trials.discard(trial)  # a reset that never came back
            if trial.status == Trial.PENDING:  # the cached actor it was given is gone
                if trial in self._staged_trials:
                    self._unstage_trial_with_resources(trial)
                self._set_trial_status(trial, Trial.RUNNING)  # as Tune's `_actor_failed` does for a new actor
        return recover(self, trial, exception)

    # patched for the length of the sweep, and put back below
    Trial.handle_error, TuneController._process_trial_failure = handle_error, process_failure  # type: ignore[method-assign]
    try:
        yield
    finally:
        Trial.handle_error, TuneController._process_trial_failure = counted, recover  # type: ignore[method-assign]
