"""The schedule population-based training found: a member's values of the searched keys at
every epoch of its lineage (the epochs its weights went through, whoever trained them), as
a `sweep train` command and a preset snippet that replay it from scratch (trainer.config's
`epoch_values`), without a population. Ray's PopulationBasedTrainingReplay is the idea; the
values come from the member's result rows, which after an exploit replay the donor's history
(sweeps.runfolder.results.one_per_epoch keeps the newest lineage)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import yaml

from sweeps.errors import SweepError
from sweeps.runfolder.plan import train_command
from sweeps.runfolder.run import Run
from trainer.config import format_epoch_values


@dataclass(frozen=True)
class FoundSchedule:
    trial_id: str
    value: float  # its best value of the run's metric
    epochs: int  # epochs of its lineage
    start: dict[str, float]  # the values of its first epoch
    changes: dict[int, dict[str, float]]  # epoch -> the values that changed there
    lineage: list[tuple[int, str]]  # (epoch, trial): the weights after that epoch came from that trial

    @property
    def epoch_values(self) -> str:
        return format_epoch_values(self.changes)

    def train_set(self) -> dict[str, object]:
        """The training keys that replay it: the first epoch's values, the changes, the epochs."""
        return {"epochs": self.epochs, **self.start, **({"epoch_values": self.epoch_values} if self.changes else {})}

    def command(self, run: Run) -> str:
        return train_command(run.plan, dict(self.train_set()))

    def snippet(self) -> str:
        return yaml.safe_dump({"train": {"scheduler": "constant", **self.train_set()}}, sort_keys=False).rstrip()

    def describe_lineage(self, quote: str = "") -> str:
        """Who trained which epochs of its weights, in words ("epoch 1 trial a, epochs 2-6 trial b")."""
        return ", ".join(f"epochs {a}-{b} trial {quote}{t}{quote}" if a < b else f"epoch {a} trial {quote}{t}{quote}"
                         for a, b, t in self.trained_by())

    def trained_by(self) -> list[tuple[int, int, str]]:
        """(first epoch, last epoch, trial) of each stretch of the lineage, oldest first."""
        stretches, start = [], 1
        for (epoch, donor) in self.lineage:
            stretches.append((start, epoch, donor))
            start = epoch + 1
        stretches.append((start, self.epochs, self.trial_id))
        return [s for s in stretches if s[0] <= s[1]]


def found_schedule(run: Run, trial_id: str | None = None) -> FoundSchedule:
    """The schedule of `trial_id`, or of the run's best member. SweepError (one line) where the
    run is no population-based training or the trial has no epochs."""
    if not run.plan.population:
        raise SweepError(f"{run.path} is not population-based training (its plan's scheduler is "
                         f"{run.plan.scheduler}); each trial trained its own fixed configuration: see "
                         f"`analysis table`")
    if trial_id is None:
        best = run.best()
        if best is None:
            raise SweepError(f"{run.path}: no member has a value of {run.metric} yet; wait for an epoch")
        trial_id = str(best["trial_id"])
    known = set(run.trials["trial_id"])
    if trial_id not in known:
        raise SweepError(f"--trial {trial_id}: no such trial in {run.path}; its trials: {', '.join(sorted(known))}")
    rows = run.history[run.history["trial_id"] == trial_id].sort_values("epoch") if not run.history.empty else None
    if rows is None or rows.empty:
        raise SweepError(f"trial {trial_id} has trained no epoch yet")
    if list(rows["epoch"].astype(int)) != list(range(1, len(rows) + 1)):
        raise SweepError(f"trial {trial_id}'s results lack epochs (it has {', '.join(map(str, rows['epoch']))}); "
                         f"resume the sweep so that it trains them again")
    keys = list(run.plan.search)
    per_epoch = [{k: float(row["epoch_lr" if k == "lr" else f"epoch_{k}"]) for k in keys}
                 for _, row in rows.iterrows()]
    changes: dict[int, dict[str, float]] = {}
    for epoch, (before, now) in enumerate(zip(per_epoch, per_epoch[1:]), start=2):
        changed = {k: v for k, v in now.items() if v != before[k]}
        if changed:
            changes[epoch] = changed
    last = rows.iloc[-1]
    lineage_text = last.get("lineage")
    lineage_text = "" if lineage_text is None or (isinstance(lineage_text, float) and math.isnan(lineage_text)) \
        else str(lineage_text)
    lineage = [(int(e), t) for e, t in (part.split(":", 1) for part in lineage_text.split(";") if part)]
    value = run.trials.set_index("trial_id").loc[trial_id, run.metric]
    return FoundSchedule(trial_id, float(value), int(last["epoch"]), per_epoch[0], changes, lineage)
