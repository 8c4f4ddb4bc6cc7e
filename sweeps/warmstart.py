"""Warm start: a sweep that goes on from an earlier one (`sweep run PRESET --warm-start RUN`).

Users sweep again after changing the code or the data. The earlier sweep's scored trials are
added to the new Optuna study as evaluated trials (COMPLETE, or PRUNED with their per-epoch
values where ASHA stopped them or the sweep ended first), so TPE samples from what they found
instead of from nothing; and its best few configurations train first, since what changed may
have moved their values. What was taken is kept in the plan (`resweep.json`, key
`warm_start`): the searcher is built from it, and the report says which trials it inherited.

Refused with one line: an earlier sweep of another metric or direction, and one that searched
a key this sweep fixes (its values would mislead the new search). Earlier values outside the
new space are left out with a note; keys this sweep searches and the earlier one fixed take
the earlier fixed value."""

from __future__ import annotations

import math
from typing import Any

from sweeps.errors import RunFolderError, SweepError
from sweeps.runfolder.plan import EarlierTrial, SweepPlan, WarmStart
from sweeps.runfolder.run import load_run, plain
from sweeps.runfolder.storage import absolute
from sweeps.search import Param
from trainer.metrics import sign

# The earlier best configurations trained first: a few, fewer in small sweeps.
FIRST_AT_MOST = 3


def first_count(trials: int) -> int:
    return min(FIRST_AT_MOST, max(1, trials // 4))



def _in_space(param: Param, value: Any) -> tuple[bool, Any]:
    """Whether `value` lies in `param`, and the value as the new space spells it (a choice's own
    object, an int for an int range): an earlier 64.0 read back through pandas is the choice 64."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False, value
    if param.kind == "choice":
        for choice in param.args:
            if choice == value:
                return True, choice
        return False, value
    if param.kind == "int":
        return (float(value).is_integer() and param.contains(value)), int(value)
    return param.contains(value), float(value)


def load_warm_start(source: str, plan: SweepPlan) -> WarmStart:
    """What the sweep `plan` takes from the earlier sweep at `source` (folder or URI): the
    `warm_start` entry of its plan. Raises SweepError for an earlier sweep it cannot use."""
    flag = f"--warm-start {source}"
    if plan.objectives:
        raise SweepError(f"{flag}: a sweep of several objectives starts from nothing (Optuna takes earlier "
                         f"trials of one value); drop --warm-start or sweep one metric")
    try:
        earlier = load_run(source)
    except (RunFolderError, SweepError, OSError) as err:
        message = str(err).splitlines()[0]
        message = message.removeprefix(f"{absolute(source)}: ").removeprefix(f"{source}: ")
        raise SweepError(f"{flag}: {message}") from None
    if earlier.plan.population:
        raise SweepError(f"{flag}: that sweep was population-based training ({earlier.plan.scheduler}): its members' "
                         f"values changed as they trained, so no trial stands for one configuration; replay its "
                         f"schedule instead (`analysis schedule {source}`)")
    if (earlier.metric, earlier.mode) != (plan.metric, plan.mode):
        raise SweepError(f"{flag}: that sweep optimised {earlier.metric} ({earlier.mode}) and this one "
                         f"{plan.metric} ({plan.mode}); warm-start from a sweep of the same metric")
    new_space = plan.params()
    fixed_now = [k for k in earlier.search_keys if k not in new_space]
    if fixed_now:
        key = fixed_now[0]
        raise SweepError(f"{flag}: that sweep searched {key}, which this one fixes at {plan.train.get(key)!r}; "
                         f"search {key} here too, or warm-start from a sweep that fixed it")
    earlier_fixed = earlier.plan.train
    trials, history = earlier.trials, earlier.history
    scored: list[EarlierTrial] = []
    skipped: dict[str, int] = {}
    for _, row in trials.iterrows():
        value = row[plan.metric]
        if row["failure"] or value is None or math.isnan(value):
            skipped["not scored (errored, diverged or not started)"] = \
                skipped.get("not scored (errored, diverged or not started)", 0) + 1
            continue
        params, outside = {}, None
        for key, param in new_space.items():
            earlier_value = plain(row[key]) if key in earlier.search_keys else earlier_fixed.get(key)
            inside, params[key] = _in_space(param, earlier_value)
            if not inside:
                outside = key
                break
        if outside:
            reason = f"{outside} outside this sweep's space"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        steps = history[history["trial_id"] == row["trial_id"]].sort_values("epoch") if not history.empty \
            else history
        curve = [float(v) for v in steps[plan.metric]] if plan.metric in steps else []
        finished = row["status"] == "TERMINATED" and not row["stopped_early"]
        scored.append(EarlierTrial(trial_id=str(row["trial_id"]), params=params, value=float(value),
                                   pruned=not finished, intermediate=[v for v in curve if not math.isnan(v)]))
    if not scored:
        why = "; ".join(f"{n} {reason}" for reason, n in skipped.items()) or "no trials"
        raise SweepError(f"{flag}: no earlier trial fits this sweep ({why}); warm-start from a sweep of "
                         f"this search space")
    ranked = sorted(scored, key=lambda t: (t.pruned, -sign(plan.mode) * t.value))
    first: list[EarlierTrial] = []
    for trial in ranked:  # distinct configurations: two trials of one config train it once
        if len(first) < first_count(plan.trials) and all(t.params != trial.params for t in first):
            first.append(trial)
    return WarmStart(source=earlier.path, preset=earlier.plan.preset, dataset=earlier_fixed.get("dataset", ""),
                     trials=scored, first=[t.trial_id for t in first], skipped=skipped)


def first_points(warm_start: WarmStart) -> list[dict[str, Any]]:
    """The earlier best configurations, in the order they train first."""
    by_id = {t.trial_id: t for t in warm_start.trials}
    return [dict(by_id[trial_id].params) for trial_id in warm_start.first]


def add_earlier_trials(searcher: Any, warm_start: WarmStart) -> None:
    """Add the earlier trials to an OptunaSearch's study as evaluated ones."""
    for trial in warm_start.trials:
        searcher.add_evaluated_point(trial.params, None if trial.pruned else trial.value,
                                     pruned=trial.pruned, intermediate_values=trial.intermediate or None)


def describe(warm_start: WarmStart) -> str:
    """One line for the plan and the run's start: what was taken from where."""
    trials = warm_start.trials
    pruned = sum(t.pruned for t in trials)
    text = (f"{len(trials)} trials of {warm_start.source} join the search ({len(trials) - pruned} finished, "
            f"{pruned} stopped early); its best {len(warm_start.first)} configuration(s) train first")
    if warm_start.skipped:
        text += "; left out: " + ", ".join(f"{n} {reason}" for reason, n in warm_start.skipped.items())
    return text
