"""The Ray Tune wiring, driver side: the trainable (`sweeps.engine.trial.run_trial`, which keeps a
checkpoint per epoch, the best and the newest) with its resources, Optuna's sampler (the plan's
`search_setting`) under a concurrency limit, ASHA, retries from the last checkpoint, resume.
With `sweeps.engine.trial` and `sweeps.engine.archive`, the only modules of resweep that import Ray."""

from __future__ import annotations

import logging
import os
import shlex
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any

# Tune snapshots the sweep (trials, searcher) and copies its files and every trial's results
# to the run folder every TUNE_GLOBAL_CHECKPOINT_S seconds: how fresh `sweep status` is
# during a sweep, and what each copy costs (README, "Where results go").
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "10")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

import ray  # noqa: E402
import torch  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune import FailureConfig, RunConfig, TuneConfig, Tuner  # noqa: E402
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from sweeps.budget import BudgetLimit, Ledger
from sweeps.engine.archive import ArchiveState, drive, kept_aside, remove_orphans, restore_archive
from sweeps.engine.budget import BudgetEnd, BudgetGate, attach
from sweeps.engine.cluster import Cluster, check_reachable, find_cluster
from sweeps.engine.progress import LiveProgress
from sweeps.engine.reclaim import only_the_trials_own_failures_counted
from sweeps.engine.schedulers import (
    SnapshottingASHA,
    SnapshottingFIFO,
    SnapshottingParetoASHA,
    SnapshottingPopulation,
)
from sweeps.engine.tracking import TensorBoardLogger, check_trackers, tracking_callbacks
from sweeps.engine.trial import run_trial
from sweeps.errors import SweepError
from sweeps.planner import with_budget
from sweeps.prices import usd
from sweeps.runfolder.claim import Claim
from sweeps.runfolder.layout import (
    plan_file,
    trial_folder_name,
)
from sweeps.runfolder.plan import SweepPlan, check_unused, train_command
from sweeps.runfolder.run import Outcome, Run, load_run, plain
from sweeps.runfolder.schedule import found_schedule
from sweeps.runfolder.storage import (
    StoreError,
    check_writable,
    current_outage,
    delete,
    gone_too_long,
    is_uri,
)
from sweeps.runfolder.study import export_study
from sweeps.search import make_sampler, optuna_distributions
from sweeps.warmstart import add_earlier_trials, first_points
from trainer.datasets import load_data


class _Hide(logging.Filter):
    """Drop Tune's log lines that say what resweep says better or that need no action."""

    def __init__(self, *texts: str):
        super().__init__()
        self.texts = texts

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in self.texts)


# After Ctrl-C Tune's hint names `Tuner.restore(...)`; ours names `sweep resume`. On a
# resume, Tune's reader warns about the trials that had not reported yet. A trial that fails
# is said once, in the summary and by `sweep status` (Tune logs each try's traceback). A
# local Ray's token authentication, on by default, asks nothing of the user.
logging.getLogger("ray.tune.tune").addFilter(_Hide("Tuner.restore(", "Trials did not complete"))
logging.getLogger("ray.tune.analysis.experiment_analysis").addFilter(_Hide("Failed to fetch metrics"))
logging.getLogger("ray.tune.execution.tune_controller").addFilter(_Hide("Trial task failed for trial"))
# Tune's advice to report less often when a step is slow: a trial reports once per epoch.
logging.getLogger("ray.tune.utils.util").addFilter(_Hide("may be a performance bottleneck"))
logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
    _Hide("Token authentication is enabled for this Ray cluster"))
# A store that is away: resweep says so once, with since when (sweeps.runfolder.storage); Tune logs a
# traceback at each of its failed copies.
logging.getLogger("ray.tune.execution.experiment_state").addFilter(_Hide("Saving experiment state to storage"))
logging.getLogger("ray.train._internal.syncer").addFilter(_Hide("failed", "Failed"))
logging.getLogger("ray.train._internal.storage").addFilter(_Hide("Caught exception when creating directory"))
# A restarted trial reports its earlier epochs again (sweeps.engine.trial); Optuna keeps the first.
warnings.filterwarnings("ignore", message=r"The reported value is ignored because this `step=\d+` is already reported")


def trial_dirname(trial) -> str:
    return trial_folder_name(trial.trial_id)


def connect(cluster: Cluster) -> bool:
    """Join `cluster`, or start a local Ray instance; True if we started it."""
    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if not cluster.local:
        try:
            ray.init(address=cluster.address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise SweepError(f"cannot join the Ray cluster at {cluster.address} (from {cluster.source}): "
                             f"{str(err).splitlines()[0][:160]}; check `ray status` there, or run with --local"
                             ) from None
        return False
    os.environ.pop("RAY_ADDRESS", None)  # --local wins over the environment
    ray.init(address="local", include_dashboard=False, **quiet)  # the dashboard stays off: nothing listens
    return True


def check_local_resources(plan: SweepPlan) -> None:
    """A local sweep whose trials ask for more than this machine has would wait forever: refuse it."""
    gpus, cpus = torch.cuda.device_count(), os.cpu_count() or 1
    if plan.gpu > 0 and gpus == 0:
        raise SweepError(f"{plan.preset} asks for {plan.gpu:g} GPU per trial and this machine has none; "
                         f"pass --gpus-per-trial 0 to train on the CPU, or join a GPU cluster with --address")
    if plan.gpu > gpus:
        raise SweepError(f"{plan.preset} asks for {plan.gpu:g} GPUs per trial and this machine has {gpus}; "
                         f"pass --gpus-per-trial {gpus}")
    if plan.cpu > cpus:
        raise SweepError(f"{plan.preset} asks for {plan.cpu:g} CPUs per trial and this machine has {cpus}; "
                         f"pass --cpus-per-trial {cpus}")


def concurrency_for(plan: SweepPlan, local: bool) -> int:
    total = ray.cluster_resources()
    cpus, gpus = total.get("CPU", 0), total.get("GPU", 0)
    if plan.concurrency:
        return plan.concurrency
    if not local:  # an autoscaling cluster grows to the trials' demand
        return plan.trials
    fit = int(cpus // plan.cpu)
    if plan.gpu > 0:
        fit = min(fit, int(gpus // plan.gpu))
    return max(1, min(fit, plan.trials))


def make_trainable(plan: SweepPlan):
    trainable = tune.with_parameters(run_trial, base=plan.train, metric=plan.metric, mode=plan.mode,
                                     run_path=plan.path, mutable=tuple(plan.search) if plan.population else ())
    resources = {"cpu": plan.cpu, "gpu": plan.gpu}
    return tune.with_resources(trainable, resources)


def make_searcher(plan: SweepPlan, concurrency: int, budget: Ledger | None = None):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in memory"
    distributions = optuna_distributions(plan.search)
    setting = plan.search_setting
    sampler = make_sampler(setting, plan.trials, plan.seed)
    if plan.warm_start:  # the earlier sweep's best first, its trials already in the study
        first = first_points(plan.warm_start)
    else:
        first = [dict(plan.initial)] if plan.initial and setting.initial_first else []
    metric: str | list[str] = plan.metric
    mode: str | list[str] = plan.mode
    if plan.objectives:  # Optuna's TPE is multi-objective by itself (MOTPE); each trial's last report counts
        metric, mode = list(plan.objectives), list(plan.objectives.values())
    searcher = OptunaSearch(space=distributions, metric=metric, mode=mode, sampler=sampler,
                            points_to_evaluate=first or None)
    if plan.warm_start:
        add_earlier_trials(searcher, plan.warm_start)
    budget = budget or Ledger(limit=0, units=plan.units, max_epochs=plan.max_epochs, estimate_epoch_s=0)
    return ConcurrencyLimiter(BudgetGate(searcher, budget), max_concurrent=concurrency)


def make_scheduler(plan: SweepPlan) -> SnapshottingASHA | SnapshottingParetoASHA | SnapshottingFIFO \
        | SnapshottingPopulation:
    """The plan's early stopping (`plan.stopping_rule`), or its population-based training. Rungs
    count `epoch`, which a trial resumed from its own checkpoint reports truly (Tune's
    training_iteration starts again at 1 there)."""
    if plan.population:
        return SnapshottingPopulation(plan.metric, plan.mode, plan.perturbation_interval, plan.quantile,
                                      plan.params(), plan.path, plan.max_epochs, plan.seed,
                                      bayesian=plan.scheduler == "pb2")
    if not plan.early_stopping:
        return SnapshottingFIFO()
    if plan.pareto_stopping:
        return SnapshottingParetoASHA(plan.objectives, time_attr="epoch", max_t=plan.max_epochs,
                                      grace_period=plan.grace_period, reduction_factor=plan.reduction_factor)
    return SnapshottingASHA(time_attr="epoch", max_t=plan.max_epochs, grace_period=plan.grace_period,
                            reduction_factor=plan.reduction_factor)


def run_sweep(plan: SweepPlan, address: str | None = None, local: bool = False, resume: bool = False,
              reuse_actors: bool = True, trackers: bool = True, budget: str | None = None) -> SweepSummary:
    """Run (or resume) the sweep of `plan` on the cluster `find_cluster(address, local)` picks;
    returns its summary. Trial actors are reused (a new trial skips the process start and the
    dataset load) unless `reuse_actors` is off; `trackers` off drops the plan's MLflow and W&B
    logging (TensorBoard stays); `budget` replaces a resumed sweep's limit (what it spent before
    counts). Everything is checked before the run folder is claimed, and nothing is written to
    it before."""
    import threading

    if resume and (budget or plan.budget):  # a budget already spent is refused here, not an epoch later
        done = load_run(plan.path, plan=plan)
        plan = with_budget(plan, budget or plan.budget, spent=done.trial_hours, epoch_s=done.epoch_s(),
                           option="--budget" if budget else "the run's --budget")
    if plan.budget_hours and threading.current_thread() is not threading.main_thread():
        raise SweepError("a sweep with a budget ends from the main thread (Tune's signal handler); run it there")
    cluster = find_cluster(address, local)
    check_reachable(cluster)  # seconds, where ray.init would retry for minutes
    check_trackers(plan, resume=resume, without=not trackers)  # seconds: a tracker that does not answer
    tracking = tracking_callbacks(plan) if trackers else [TensorBoardLogger()]
    problem = check_writable(plan.storage)
    if problem:
        raise SweepError(f"results folder: {problem}")
    if cluster.local:
        check_local_resources(plan)
        # Here the trials read the data this process can see: load it once now, so that missing
        # data is one clear error before any trial starts (and the cache is built for them).
        load_data(plan.base_config)
    claim = Claim.take(plan.path, "sweep resume" if resume else "sweep run")  # nothing is written before this
    saved = False
    try:
        if not resume:
            check_unused(plan.path)
            plan.save()  # the run's first file: readers know the run from now on
            saved = True
        else:
            if claim.note():
                print(claim.note(), flush=True)
            if budget:
                plan.save()  # the new limit is the run's from now on
        summary = _run_claimed(plan, cluster, resume, reuse_actors, tracking)
    except StoreError as err:  # a store away past the window, wherever the driver met it: how to go on
        claim.release()
        if err.transient and err.run is None:
            raise gone_too_long(plan.path, err, time.time() - (current_outage() or ("", time.time()))[1],
                                run=plan.path) from None
        raise
    except BaseException:
        try:
            if saved and not Tuner.can_restore(plan.path):  # it never started: the name is free again
                delete(plan_file(plan.path))
        except Exception:  # the store is away: the plan stays, and `sweep resume` says there is nothing to resume
            pass
        claim.release(remove_created=not resume)
        raise
    claim.release()
    return summary


def start_from_plan(run_path: str) -> None:
    """Make ready to start, from its plan, a run that has no sweep state: trial folders that kept
    no checkpoint go (a driver ended before Tune first saved); trials that kept one are never
    replaced, so such a run is refused."""
    kept = kept_aside(run_path, set())
    if kept:
        raise SweepError(f"{run_path}: no sweep state to resume, yet {len(kept)} trial(s) kept checkpoints "
                         f"({kept[0]}); nothing there is replaced: move the folder aside, or start anew with "
                         f"`sweep run` and another --name")
    remove_orphans(run_path, set())
    print(f"note: {run_path} had not started: starting it from its plan", flush=True)


def _run_claimed(plan: SweepPlan, cluster: Cluster, resume: bool, reuse_actors: bool, tracking: list) -> SweepSummary:
    drive(plan.path)
    if resume:
        known = restore_archive(plan.path)  # Tune's state as one whole snapshot, not files copied in part
        if known is not None:
            removed = remove_orphans(plan.path, known)
            if removed:
                print(f"note: {len(removed)} trial(s) started after the last saved state and kept nothing; "
                      f"their folders are removed and the places sampled anew", flush=True)
            aside = kept_aside(plan.path, known)
            if aside:
                print(f"note: {len(aside)} trial(s) started after the last saved state yet kept a checkpoint "
                      f"({aside[0]}): left out of the sweep, their places sampled anew; their folders are kept "
                      f"as they are", flush=True)
    restoring = resume and Tuner.can_restore(plan.path)
    if resume and not restoring:  # a plan written ahead (`sweep slurm`), or a driver killed as it began
        start_from_plan(plan.path)
    started = connect(cluster)
    if not cluster.local and not is_uri(plan.storage):
        print(f"note: {plan.storage} must be a folder every node reaches (NFS); use s3:// or gs:// otherwise",
              flush=True)
    try:
        concurrency = concurrency_for(plan, cluster.local)
        trainable = make_trainable(plan)
        # a resumed sweep's money and budget count what its earlier drivers spent, measured
        done = load_run(plan.path, plan=plan) if restoring and (plan.price_per_hour or plan.budget_hours) else None
        before = done.trial_hours if done is not None else 0.0
        counted = {str(t): {int(e) for e in rows["epoch"]} for t, rows in done.history.groupby("trial_id")} \
            if done is not None and not done.history.empty else {}
        budget = Ledger(limit=plan.budget_hours, units=plan.units, max_epochs=plan.max_epochs,
                        estimate_epoch_s=(done.epoch_s() if done is not None else None) or plan.estimate_epoch_s,
                        before=before, counted=counted)
        progress = LiveProgress(plan.metric, plan.mode, plan.trials, plan.max_epochs,
                                price_per_hour=plan.price_per_hour, units=plan.units, hours_before=before,
                                budget_hours=plan.budget_hours, ledger=budget)
        ending = BudgetEnd(budget, plan.trials)
        callbacks = [progress, ending, ArchiveState(), *tracking]
        if restoring:
            tuner = Tuner.restore(plan.path, trainable=trainable, resume_unfinished=True, resume_errored=True)
            # the callbacks come from the plan, not from Tune's pickle of them: a tracker checked
            # (or dropped) above is the one used
            restored = tuner._local_tuner
            assert restored is not None, "a Tuner restored on this machine"
            restored.get_run_config().callbacks = callbacks
            config = restored._tune_config
            config.search_alg = attach(config.search_alg, config.scheduler, budget)
            if isinstance(config.scheduler, SnapshottingPopulation):
                config.scheduler.run_path = plan.path  # where the run is now: it may have moved since
        else:
            scheduler = make_scheduler(plan)
            scheduler.budget = budget
            tuner = Tuner(
                trainable,
                tune_config=TuneConfig(metric=plan.metric, mode=plan.mode,
                                       # a population's members are all created at once; as many
                                       # train together as resources allow, the others take turns
                                       search_alg=make_searcher(plan, plan.trials if plan.population
                                                                else concurrency, budget),
                                       scheduler=scheduler, num_samples=plan.trials,
                                       reuse_actors=reuse_actors,  # the ConcurrencyLimiter caps concurrency
                                       trial_dirname_creator=trial_dirname),
                run_config=RunConfig(
                    name=plan.name, storage_path=plan.storage, verbose=0, callbacks=callbacks,
                    failure_config=FailureConfig(max_failures=2)),
            )
        print(f"{'resuming' if restoring else 'running'} {plan.preset}: {plan.trials} trials, at most "
              f"{plan.max_epochs} epochs each, {concurrency} at a time -> {plan.path}", flush=True)
        interrupted = fit_until_done_or_interrupted(tuner)
    finally:
        if started:
            ray.shutdown()
            end_rays_signal_handler()
    return summarize(plan, interrupted and not ending.ended, budget_reached=ending.ended)


def end_rays_signal_handler() -> None:
    """Take back SIGTERM from Ray's driver handler once Ray is shut down: it turns a late SIGTERM
    (SLURM's notice as the sweep ends) into SystemExit inside Ray's exit hook, which crashes the
    interpreter; after the sweep, SIGTERM ends the driver plainly, its results already written."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread() and \
            getattr(signal.getsignal(signal.SIGTERM), "__module__", "").startswith("ray."):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def fit_until_done_or_interrupted(tuner: Tuner) -> bool:
    """Run the sweep; True when Ctrl-C (SIGINT) or SIGTERM stopped it. Tune catches the first
    SIGINT, saves the sweep and returns; its handler puts the one before it back only then.
    SIGTERM (`kill`, `scancel`, a container stopping) is taken as that SIGINT, so the run folder
    is left as Ctrl-C leaves it; later ones change nothing (whoever sent it ends the driver
    after its own grace: SLURM's KillWait, Docker's timeout)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        with only_the_trials_own_failures_counted():
            tuner.fit()  # no signal handler here: the summary's unfinished trials tell
        return False
    before = signal.getsignal(signal.SIGINT)

    def stop_as_ctrl_c(*_) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.raise_signal(signal.SIGINT)

    before_term = signal.signal(signal.SIGTERM, stop_as_ctrl_c)
    try:
        with only_the_trials_own_failures_counted():
            tuner.fit()
        return signal.getsignal(signal.SIGINT) is before
    finally:
        signal.signal(signal.SIGINT, before)
        signal.signal(signal.SIGTERM, before_term)


@dataclass(frozen=True)
class Best:
    """The sweep's best trial, as its summary names it."""
    trial_id: str
    value: float  # its best value of the metric
    epochs: int  # epochs it trained
    params: dict[str, Any]  # its searched values


@dataclass(frozen=True)
class SweepSummary:
    """What a sweep that ended (or stopped) did, for `sweep run` and `sweep resume` to say."""
    path: str  # the run folder
    metric: str
    outcome: Outcome  # how its trials ended, counted as the report counts them
    best: Best | None  # None: no trial has a value of the metric yet
    interrupted: bool  # Ctrl-C, or trials left unfinished: `sweep resume` goes on
    train_command: str | None  # the `sweep train` line that trains the best alone
    finished: int  # trials TERMINATED (trained to the end, stopped early, or halted)
    cost: str = ""  # "spent: $X (...)" where the plan has a price
    budget: str = ""  # "budget reached: ..." where the budget ended the sweep, with the command that goes on


def summarize(plan: SweepPlan, interrupted: bool = False, budget_reached: bool = False) -> SweepSummary:
    run = load_run(plan.path, plan=plan)  # the store may be away: waited for, as through the sweep
    export_study(run)
    row = run.best()
    best = None if row is None else Best(trial_id=row["trial_id"], value=float(row[plan.metric]),
                                         epochs=int(row["epochs_trained"]),
                                         params={k: plain(row[k]) for k in plan.search})
    command = train_command(plan, best.params) if best else None
    if best and plan.population:  # the best member's values changed as it trained: its schedule replayed
        try:
            found = found_schedule(run, best.trial_id)
            command = found.command(run)
            # its values at its last epoch, not the ones it was sampled with
            best = replace(best, params={**found.start, **{k: v for c in found.changes.values() for k, v in c.items()}})
        except SweepError:
            pass  # its epochs are not all in the run folder: the run's summary says it is unfinished
    outcome = run.outcome()
    cost = ""
    if plan.price_per_hour:
        cost = (f"spent: {usd(run.spent)} ({run.trial_hours:.3g} {plan.unit} measured, at ${plan.price_per_hour:.3g} "
                f"per {plan.unit[:-1]}: {plan.price_source})")
        if plan.estimate_hours:
            cost += (f"; the plan estimated {plan.amount(plan.estimate_hours)} for its epochs (at most "
                     f"{plan.amount(plan.estimate_most_hours)})")
    return SweepSummary(path=plan.path, metric=plan.metric, outcome=outcome, best=best,
                        interrupted=not budget_reached and (interrupted or bool(outcome.unfinished)),
                        train_command=command,
                        finished=int((run.trials["status"] == "TERMINATED").sum()) if not run.trials.empty else 0,
                        cost=cost, budget=budget_line(plan, run, best) if budget_reached else "")


def budget_line(plan: SweepPlan, run: Run, best: Best | None) -> str:
    """The line a sweep that its budget ended closes with: what it spent and bought, and the
    `sweep resume` that goes on, with a budget that pays for the rest at the measured pace."""
    bought = f"best {plan.metric} {best.value:.4f} ({best.trial_id})" if best else f"no {plan.metric} yet"
    epochs = int(run.trials["epochs_trained"].sum()) if not run.trials.empty else 0
    # what lets every trial left start and train to its end at the measured pace (the starting rule
    # asks for each trial's worst case), with half as much again for the pace to vary (a driver's
    # first epochs, trials sharing a machine)
    trials = run.trials
    left = plan.max_epochs * run.outcome().not_started
    if not trials.empty:
        unfinished = ~trials["status"].isin(["TERMINATED", "ERROR"])
        left += int((plan.max_epochs - trials.loc[unfinished, "epochs_trained"]).clip(lower=0).sum())
    per_epoch = run.epoch_s() or plan.estimate_epoch_s
    hours = max(run.trial_hours + 1.5 * left * per_epoch * plan.units / 3600, run.trial_hours * 1.05)
    limit = BudgetLimit.read(plan.budget)
    suggested = limit.scaled(hours * plan.price_per_hour if limit.unit == "usd" else hours)
    return (f"budget reached: {plan.amount(run.trial_hours)} of {plan.amount(plan.budget_hours)} spent, {epochs} "
            f"epochs in {len(run.trials)} trials; it bought {bought}; to go on: sweep resume {shlex.quote(plan.path)} "
            f"--budget {suggested}")
