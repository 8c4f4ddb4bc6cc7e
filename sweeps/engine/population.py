"""Population-based training (PBT; PB2, its Bayesian-optimisation variant), wired to resweep's
own checkpoints: a sweep's trials are a population that trains at once, and every
`interval` epochs a member in the lowest `quantile` takes the weights of one in the highest
and trains on with that member's values of the searched keys, perturbed (PBT) or chosen by
a Gaussian-process bandit over what changes of them gained so far (PB2).

Why not Ray's schedulers: resweep's trials keep their own checkpoints in their folders
(sweeps.engine.trial), which Ray's PBT never sees, so it would exploit nothing; and the
faults its users meet (a donor with no checkpoint, the wrong weights, perturbed values lost on
a restore) come from keeping the new values in Tune's state. Here an exploit is done in the
run folder, by the driver, while the member waits for its next epoch:

1. the donor's newest complete checkpoint is read from the donor's folder (a donor with none is
   never chosen);
2. it is written into the member's folder as the member's newest checkpoint, with the new
   values in its config and the lineage (after which epoch it came from whom) grown by one;
   the member's own checkpoints are deleted in an order that leaves, at every moment, a
   newest checkpoint that is whole and consistent (its own, or the inherited one);
3. the member is paused, and restarts from its newest checkpoint, whose values win over the
   ones it was sampled with (sweeps.engine.trial.run_trial's `mutable`).

So the member's folder is the one record of what it trains with: a SIGKILLed driver resumed,
a trial retried after a lost node, both go on with the perturbed values, behind a URI too.

With more members than trials running at once, a member that reaches a perturbation point
while another is behind it yields its place (paused; the one furthest behind starts next),
so the population moves on together, as Ray's PBT does it. A member is ranked among those
that have reached its epoch, and takes weights from none behind it: scores of earlier epochs
are not comparable, and a donor behind would send it back.
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from sweeps.engine.trial import TrialFolder
from sweeps.runfolder.layout import checkpoint_name
from sweeps.runfolder.storage import StoreError, join, local_folder
from sweeps.search import Param
from trainer.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from trainer.errors import CheckpointError
from trainer.metrics import sign

RESAMPLE_PROBABILITY = 0.25  # PBT: a value drawn anew from its range rather than perturbed (Ray's default)
FACTORS = (0.8, 1.2)  # PBT: a value otherwise multiplied by one of these (Ray's), then kept in its range
UCB_KAPPA = 2.0  # PB2: how far above its mean a candidate's gain may be bet on
CANDIDATES = 256  # PB2: random candidates the bandit ranks
OBSERVATIONS = 400  # PB2: the newest gains its model fits (a solve is cubic in them; the driver waits for it)
# An exploit is optional: a store away longer than this keeps the member on its own weights this time,
# rather than holding the driver for the store window
EXPLOIT_WAIT_S = 10.0


def folder_of(trial: Trial) -> str:
    """The name of a trial's folder in the run."""
    assert trial.storage is not None, "a trial of a running sweep"
    return os.path.basename(trial.storage.trial_fs_path.rstrip("/"))


class Space:
    """The searched keys' ranges, and a value's place in its range as a number in [0, 1]
    (log scale for loguniform), which is what PB2's model and PBT's resampling work in."""

    def __init__(self, params: dict[str, Param]):
        self.params = params

    def unit(self, key: str, value: float) -> float:
        param = self.params[key]
        low, high = (float(a) for a in param.args)
        if param.kind == "loguniform":
            return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
        return (value - low) / (high - low)

    def value(self, key: str, unit: float) -> float:
        param = self.params[key]
        low, high = (float(a) for a in param.args)
        unit = min(1.0, max(0.0, unit))
        if param.kind == "loguniform":
            return math.exp(math.log(low) + unit * (math.log(high) - math.log(low)))
        return low + unit * (high - low)

    def clip(self, key: str, value: float) -> float:
        low, high = (float(a) for a in self.params[key].args)
        return min(high, max(low, value))


def perturb(values: dict[str, float], space: Space, rng: random.Random) -> dict[str, float]:
    """PBT's explore: each value drawn anew from its range (probability RESAMPLE_PROBABILITY),
    else multiplied by 0.8 or 1.2 and kept within its range."""
    out = {}
    for key, value in values.items():
        if rng.random() < RESAMPLE_PROBABILITY:
            out[key] = space.value(key, rng.random())
        else:
            out[key] = space.clip(key, value * rng.choice(FACTORS))
    return out


def bandit_choice(observations: list[tuple[float, list[float], float]], epoch_unit: float, keys: list[str],
                  space: Space, rng: random.Random) -> dict[str, float]:
    """PB2's explore: of CANDIDATES random points of the space, the one of the highest upper
    confidence bound of the gain a Gaussian process (RBF kernel over time and the values'
    places in their ranges, the gains standardised) predicts at this time. `observations` are
    (time, places, gain per epoch); with fewer than 3 the choice is random."""
    import numpy as np

    candidates = [[rng.random() for _ in keys] for _ in range(CANDIDATES)]
    if len(observations) < 3:
        best = candidates[0]
    else:
        observations = observations[-OBSERVATIONS:]
        x = np.array([[t, *u] for t, u, _ in observations])
        y = np.array([g for _, _, g in observations])
        y = (y - y.mean()) / (y.std() or 1.0)
        length, noise = 0.3, 0.1

        def kernel(a, b):
            d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
            return np.exp(-d / (2 * length ** 2))

        k = kernel(x, x) + noise * np.eye(len(x))
        c = np.array([[epoch_unit, *u] for u in candidates])
        ks = kernel(c, x)
        solve = np.linalg.solve(k, np.column_stack([y, ks.T]))
        mean = ks @ solve[:, 0]
        var = np.clip(1.0 - np.einsum("ij,ji->i", ks, solve[:, 1:]), 1e-9, None)
        best = candidates[int(np.argmax(mean + UCB_KAPPA * np.sqrt(var)))]
    return {key: space.value(key, u) for key, u in zip(keys, best)}


class Chooser:
    """The new values of an exploit: PBT's perturbation of the donor's, or PB2's bandit."""

    def __init__(self, keys: list[str], space: Space, rng: random.Random, bayesian: bool,
                 observations: list, epoch_unit: float):
        self.keys, self.space, self.rng = keys, space, rng
        self.bayesian, self.observations, self.epoch_unit = bayesian, observations, epoch_unit

    def __call__(self, donor_values: dict[str, float]) -> dict[str, float]:
        if self.bayesian:
            return bandit_choice(self.observations, self.epoch_unit, self.keys, self.space, self.rng)
        return perturb(donor_values, self.space, self.rng)


def exploit(run_path: str, member: str, donor: str, donor_id: str, choose: Chooser,
            wait: float = EXPLOIT_WAIT_S) -> tuple[int, dict[str, float]] | None:
    """Copy the newest complete checkpoint of trial folder `donor` into trial folder `member`
    as its newest, with the values `choose(donor_values)` returns and the lineage grown by
    (epoch, `donor_id`); returns (epoch, values), or None where the donor has no complete
    checkpoint (then nothing is written). A store away for `wait` seconds raises StoreError."""
    source = TrialFolder(run_path, donor)
    for epoch in reversed(source.epochs(wait)):
        try:
            with local_folder(join(source.path, checkpoint_name(epoch)), wait) as folder:
                state = load_checkpoint(folder)
            break
        except (CheckpointError, FileNotFoundError):
            continue  # pruned by the donor meanwhile, or not whole: the one before it
    else:
        return None
    keys = [k for k in state["config"] if k in choose.keys]
    values = choose({k: float(state["config"][k]) for k in keys})
    state["config"] = {**state["config"], **values}
    state["lineage"] = [*state.get("lineage", []), [epoch, donor_id]]
    target = TrialFolder(run_path, member)
    own = target.epochs(wait)
    # At every moment the member's newest checkpoint is whole: its own (an exploit that never
    # happened) or the inherited one.
    for old in sorted((e for e in own if e >= epoch), reverse=True):
        target.remove(old, wait)
    target.write(epoch, lambda folder: save_checkpoint(state, Path(folder) / CHECKPOINT_FILE), wait)
    for old in own:
        if old < epoch:
            target.remove(old, wait)
    return epoch, values


class Population(FIFOScheduler):
    """PBT (or PB2 where `bayesian`) over `space`, ranking members by `metric` (`mode`) at their
    newest epoch, a decision every `interval` epochs; exploits in `run_path` (see above)."""

    def __init__(self, metric: str, mode: str, interval: int, quantile: float, space: dict[str, Param],
                 run_path: str, max_t: int, seed: int, bayesian: bool = False):
        super().__init__()
        self._metric_name, self._sign = metric, sign(mode)
        self._interval, self._quantile, self._max_t = interval, quantile, max_t
        self._space, self._keys = Space(space), list(space)
        self.run_path, self._bayesian = run_path, bayesian  # where the members' folders are
        self._rng = random.Random(seed)
        self._score: dict[str, float] = {}  # trial id -> signed metric at its newest epoch
        self._epoch: dict[str, int] = {}  # trial id -> its newest epoch
        self._decided: dict[str, int] = {}  # trial id -> epoch of its last decision (or of the weights it took)
        self._values: dict[str, dict[str, float]] = {}  # trial id -> values of its newest epoch
        self._observations: list[tuple[float, list[float], float]] = []  # PB2: (time, places, gain per epoch)
        self.exploits: list[dict[str, Any]] = []  # what this driver did: member, donor, epoch, values

    def on_trial_result(self, tune_controller, trial, result):
        tid = trial.trial_id
        if "epoch" not in result or result.get(self._metric_name) is None:
            return TrialScheduler.CONTINUE
        epoch, score = int(result["epoch"]), self._sign * float(result[self._metric_name])
        values = {k: float(result[f"epoch_{k}"]) for k in self._keys if f"epoch_{k}" in result}
        if not result.get("replayed") and tid in self._score and self._epoch.get(tid, 0) < epoch \
                and self._values.get(tid) == values and len(values) == len(self._keys):
            gain = (score - self._score[tid]) / (epoch - self._epoch[tid])
            self._observations.append((epoch / self._max_t, [self._space.unit(k, values[k]) for k in self._keys],
                                       gain))
        self._score[tid], self._epoch[tid], self._values[tid] = score, epoch, values
        if result.get("replayed"):  # a restart's epochs: judged when they were trained
            self._decided[tid] = max(self._decided.get(tid, 0), epoch)
            return TrialScheduler.CONTINUE
        if epoch >= self._max_t or epoch - self._decided.get(tid, 0) < self._interval:
            return TrialScheduler.CONTINUE
        self._decided[tid] = epoch
        if self._exploit(tune_controller, trial, epoch):
            return TrialScheduler.PAUSE  # restarts from the checkpoint it inherited
        if self._someone_behind(tune_controller, trial, epoch):
            return TrialScheduler.PAUSE  # yields its place; its checkpoint of this epoch is written
        return TrialScheduler.CONTINUE

    def _ranked(self, tune_controller) -> list[Trial]:
        live = [t for t in tune_controller.get_trials()
                if not t.is_finished() and t.trial_id in self._score and not math.isnan(self._score[t.trial_id])]
        return sorted(live, key=lambda t: self._score[t.trial_id])

    def _exploit(self, tune_controller, trial: Trial, epoch: int) -> bool:
        # ranked among the members that have reached this epoch: a score of an earlier epoch is not
        # comparable, and a donor behind would send the member back (with members taking turns, it
        # could be sent back at every decision and the population never get on)
        ranked = [t for t in self._ranked(tune_controller) if self._epoch.get(t.trial_id, 0) >= epoch]
        if len(ranked) <= 1:
            return False
        count = int(math.ceil(len(ranked) * self._quantile))
        count = min(count, len(ranked) // 2)
        lower, upper = ranked[:count], ranked[-count:] if count else []
        if trial not in lower:
            return False
        donors = [t for t in upper if t is not trial]
        self._rng.shuffle(donors)
        chooser = Chooser(self._keys, self._space, self._rng, self._bayesian, self._observations,
                          epoch / self._max_t)
        for donor in donors:
            try:
                done = exploit(self.run_path, folder_of(trial), folder_of(donor), donor.trial_id, chooser)
            except StoreError as err:
                print(f"note: trial {trial.trial_id} keeps its own weights this time: the store does not "
                      f"answer ({err})", flush=True)
                return False
            if done is not None:
                taken, values = done
                self.exploits.append({"member": trial.trial_id, "donor": donor.trial_id, "epoch": taken,
                                      "at": epoch, "values": values})
                self._decided[trial.trial_id] = taken
                self._epoch[trial.trial_id] = taken
                self._score[trial.trial_id] = self._score[donor.trial_id]
                self._values[trial.trial_id] = values
                return True
        return False  # no donor has a complete checkpoint yet: never exploited

    def _someone_behind(self, tune_controller, trial: Trial, epoch: int) -> bool:
        return any(t is not trial and t.status in (Trial.PENDING, Trial.PAUSED)
                   and self._epoch.get(t.trial_id, 0) < epoch for t in tune_controller.get_trials())

    def choose_trial_to_run(self, tune_controller):
        waiting = [t for t in tune_controller.get_trials() if t.status in (Trial.PENDING, Trial.PAUSED)]
        return min(waiting, key=lambda t: self._epoch.get(t.trial_id, 0), default=None)

    def debug_string(self) -> str:
        return f"{'PB2' if self._bayesian else 'PBT'} over {', '.join(self._keys)}"
