"""The `sweep` command: list and show presets, train once without Ray, run/resume a sweep on Ray Tune."""

from __future__ import annotations

import json
import os
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sweeps.console import OneLineErrors, show_warnings, user_errors
from sweeps.errors import SweepError
from sweeps.presets import Preset, load_preset, preset_names
from sweeps.prices import usd
from sweeps.runfolder.layout import enclosing_run
from sweeps.runfolder.storage import check_writable
from sweeps.stopping import ALL_OBJECTIVES, FIRST_OBJECTIVE
from trainer.config import KEYS, TrainConfig, apply_overrides, from_dict
from trainer.metrics import EPOCH_METRICS

if TYPE_CHECKING:  # the engine imports Ray: loaded only by the commands that run a sweep
    from sweeps.engine.driver import SweepSummary
    from sweeps.runfolder.plan import SweepPlan

app = typer.Typer(help="Hyperparameter sweeps of ResNet image classifiers on Ray Tune (Optuna search + ASHA).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  cls=OneLineErrors)


class EarlyStopping(str, Enum):
    """What ASHA ranks at a rung where there are several objectives (sweeps.stopping)."""
    all_objectives = ALL_OBJECTIVES
    first_objective = FIRST_OBJECTIVE


@app.callback()
def main() -> None:
    """Hyperparameter sweeps of ResNet image classifiers on Ray Tune (Optuna search + ASHA)."""
    show_warnings()


SetOption = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a training key, KEY=VALUE (repeatable); see `sweep keys`.")]
LocalOption = Annotated[bool, typer.Option(
    "--local", help="Start Ray on this machine alone, even where a cluster runs.")]
AddressOption = Annotated[str | None, typer.Option(
    help="Ray cluster HOST:PORT (default: $RAY_ADDRESS, else the cluster `ray start` began on this node, else a "
         "local Ray).")]
DataDirOption = Annotated[Path | None, typer.Option(
    "--data-dir", help="Data root (else $RESWEEP_DATA, else ~/.cache/resweep/data).")]
BudgetOption = Annotated[str | None, typer.Option(
    help="A limit the sweep never passes: money (25usd, needs a price) or GPU-hours (6gpu-h; cpu-h for CPU "
         "trials). No trial starts unless it fits to its last epoch; at the limit the running trials stop after "
         "their epoch, and `sweep resume RUN --budget MORE` goes on.")]


def _format_row(values: list[str], widths: list[int]) -> str:
    return "  ".join(v.rjust(w) for v, w in zip(values, widths))


@app.command("list")
def list_presets() -> None:
    """A table of the shipped presets."""
    with user_errors():
        rows = []
        for name in preset_names():
            p = load_preset(name)
            rows.append([name, p.train.dataset, p.train.model, str(p.trials), str(p.max_epochs), f"{p.gpu:g}",
                         p.description[:60]])
        headers = ["preset", "dataset", "model", "trials", "max epochs", "GPUs/trial", "description"]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        typer.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
        for r in rows:
            typer.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)))


@app.command()
def show(preset: Annotated[str, typer.Argument(help="Preset name or YAML file.")]) -> None:
    """Print a preset, resolved and validated, as YAML."""
    import yaml

    with user_errors():
        p = load_preset(preset)
        typer.echo(f"# {p.name}: {p.path}")
        typer.echo(yaml.safe_dump(p.to_dict(), sort_keys=False).rstrip())


@app.command()
def keys() -> None:
    """The training keys that presets and --set take, with their defaults."""
    defaults = TrainConfig().to_dict()
    for key in KEYS:
        typer.echo(f"{key} = {defaults[key]!r}" + ("  # one of `sweep datasets`" if key == "dataset" else ""))


@app.command()
def datasets() -> None:
    """The data sets `--set dataset=NAME` takes: classes, size, channels, the image_size and augment
    that suit them, and where their splits come from."""
    from trainer.catalog import DATASETS

    headers = ["dataset", "classes", "images", "channels", "image_size", "augment", "splits", "what"]
    rows = [[d.name, str(d.classes or "any"), d.native, str(d.channels), str(d.image_size), d.augment, d.splits,
             d.title] for d in DATASETS]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def resolve_config(p: Preset, overrides: list[str] | None, data_dir: Path | None, with_initial: bool) -> TrainConfig:
    config = p.trial_config(p.initial) if with_initial else p.train
    config = apply_overrides(config, overrides) if overrides else config
    return from_dict({"data_dir": str(data_dir)}, base=config) if data_dir is not None else config


@app.command()
def train(
    preset: Annotated[str, typer.Argument(help="Preset name or YAML file; trains its initial configuration.")],
    overrides: SetOption = None,
    data_dir: DataDirOption = None,
    out: Annotated[Path | None, typer.Option(help="Folder for the checkpoint, config and metrics.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue from this checkpoint (file or folder).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="End stdout with a JSON line of the final metrics.")] = False,
) -> None:
    """Train one model without Ray, here, printing a row per epoch."""
    import yaml

    from trainer import train as run_training
    from trainer.files import atomic_write_bytes

    with user_errors():
        p = load_preset(preset)
        config = resolve_config(p, overrides, data_dir, with_initial=True)
        if resume is not None and not resume.exists():
            raise SweepError(f"--resume {resume}: no such checkpoint; give a checkpoint.pt or its folder")
        if out is not None and out.exists() and not out.is_dir():
            raise SweepError(f"--out {out} is a file; give a folder (it is created if missing)")
        if out is not None and enclosing_run(out) is not None:
            raise SweepError(f"--out {out} is inside the run folder {enclosing_run(out)}, among a sweep's own files; "
                             f"give a folder outside it")
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out / "config.yaml", lambda f: f.write(yaml.safe_dump(config.to_dict()).encode()))
        shown = [m for m in EPOCH_METRICS if m.column]
        headers = [m.column for m in shown]
        widths = [max(len(m.column), 5 if m.fmt == "d" else 8) for m in shown]
        typer.echo(f"training {p.name}: {config.model} on {config.dataset}, {config.epochs} epochs")
        typer.echo(_format_row(headers, widths))

        def report(metrics: dict, save) -> None:
            typer.echo(_format_row([format(metrics[m.name], m.fmt) for m in shown], widths))
            if out is not None:
                save(out)
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(metrics) + "\n")

        metrics = run_training(config, report=report, resume_from=resume)
        if "test_acc" in metrics:
            typer.echo(f"test: acc {metrics['test_acc']:.4f}, loss {metrics['test_loss']:.4f}")
        if as_json:
            typer.echo(json.dumps({**metrics, "epochs": metrics.get("epoch", 0)}))


# the plan's options, of `sweep run` and `sweep slurm`
PresetArgument = Annotated[str, typer.Argument(help="Preset name or YAML file.")]
SamplesOption = Annotated[int | None, typer.Option(help="Number of trials (preset's by default).")]
MaxEpochsOption = Annotated[int | None, typer.Option(help="Epochs a trial trains at most.")]
ConcurrencyOption = Annotated[int | None, typer.Option(help="Trials running at once (default: as resources allow).")]
GpusPerTrialOption = Annotated[float | None, typer.Option(help="GPUs per trial; fractions share a GPU; 0 = CPU.")]
CpusPerTrialOption = Annotated[float | None, typer.Option(help="CPUs per trial.")]
StorageOption = Annotated[str | None, typer.Option(
    help="Results folder or s3:// / gs:// URI (default ./runs, or $RESWEEP_STORAGE).")]
NameOption = Annotated[str | None, typer.Option(help="Run name (default: PRESET-DATE-TIME).")]
SeedOption = Annotated[int | None, typer.Option(help="Seed of the Optuna sampler and the trials.")]
MlflowOption = Annotated[str | None, typer.Option(
    help="Log each trial as an MLflow run to this tracking URI (needs the mlflow extra).")]
WandbOption = Annotated[str | None, typer.Option(
    help="Log each trial as a Weights & Biases run in this project (needs the wandb extra).")]
NoEarlyStoppingOption = Annotated[bool, typer.Option(
    "--no-early-stopping", help="Train every trial to the end (no ASHA): full curves, for `benchmarks/"
                                "asha_replay.py` to choose ASHA's settings from.")]
WarmStartOption = Annotated[str | None, typer.Option(
    help="An earlier sweep's run folder or URI: its trials join the search and its best configurations "
         "train first.")]
PriceOption = Annotated[float | None, typer.Option(
    help="Your price of a GPU-hour (of a CPU-hour for CPU trials), in USD: wins over the price table.")]


def plan_of_options(preset: str, overrides: list[str] | None, storage: str | None, data_dir: Path | None,
                    no_early_stopping: bool, **options: Any) -> SweepPlan:
    """The plan of `sweep run` and `sweep slurm` from their shared options: the storage's default
    ($RESWEEP_STORAGE, else ./runs) and the data folder made absolute (the trials run elsewhere)."""
    from sweeps.planner import make_plan

    return make_plan(load_preset(preset), overrides=list(overrides or []),
                     storage=storage or os.environ.get("RESWEEP_STORAGE") or "runs",
                     data_dir=str(data_dir.expanduser().resolve()) if data_dir is not None else None,
                     early_stopping=not no_early_stopping, **options)


@app.command()
def run(
    preset: PresetArgument,
    local: LocalOption = False,
    address: AddressOption = None,
    samples: SamplesOption = None,
    max_epochs: MaxEpochsOption = None,
    concurrency: ConcurrencyOption = None,
    gpus_per_trial: GpusPerTrialOption = None,
    cpus_per_trial: CpusPerTrialOption = None,
    storage: StorageOption = None,
    name: NameOption = None,
    overrides: SetOption = None,
    data_dir: DataDirOption = None,
    seed: SeedOption = None,
    mlflow: MlflowOption = None,
    wandb: WandbOption = None,
    no_early_stopping: NoEarlyStoppingOption = False,
    warm_start: WarmStartOption = None,
    instance: Annotated[str | None, typer.Option(
        help="The instance type the trials run on, for the plan's money (default: cluster.yaml's GPU "
             "worker; sweeps/prices.py lists the known ones).")] = None,
    price_per_hour: PriceOption = None,
    budget: BudgetOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and exit.")] = False,
) -> None:
    """Run a preset as a sweep: Optuna search, ASHA early stopping, a checkpoint per epoch."""
    from sweeps.planner import describe_plan

    with user_errors():
        plan = plan_of_options(preset, overrides, storage, data_dir, no_early_stopping, samples=samples,
                               concurrency=concurrency, gpus=gpus_per_trial, cpus=cpus_per_trial, name=name,
                               seed=seed, mlflow=mlflow, wandb=wandb, epochs=max_epochs, warm_start=warm_start,
                               instance=instance, price_per_hour=price_per_hour, budget=budget)
        if plan.warm_start is not None and not dry_run:
            from sweeps.warmstart import describe

            typer.echo(f"warm start: {describe(plan.warm_start)}")
        if dry_run:
            typer.echo(describe_plan(plan))
            return
        # the store first, before Ray and torch are imported (seconds on a small machine): a store
        # that does not answer is said within seconds of the command (run_sweep checks it again)
        problem = check_writable(plan.storage)
        if problem:
            raise SweepError(f"results folder: {problem}")
        from sweeps.engine.driver import run_sweep

        result = run_sweep(plan, address=address, local=local)
    _finish(result)


@app.command()
def resume(run_path: Annotated[str, typer.Argument(help="The run folder (or URI) of an interrupted sweep.")],
           local: LocalOption = False,
           address: AddressOption = None,
           no_trackers: Annotated[bool, typer.Option(
               "--no-trackers", help="Resume without the MLflow / W&B logging the sweep started with "
                                     "(TensorBoard stays).")] = False,
           budget: BudgetOption = None) -> None:
    """Continue an interrupted sweep: finished trials stay, unfinished ones go on from their checkpoint.
    With --budget, the sweep's limit becomes that (what it spent before counts)."""
    from sweeps.runfolder.plan import SweepPlan

    with user_errors():
        plan = SweepPlan.load(run_path)
        from sweeps.engine.driver import run_sweep

        result = run_sweep(plan, address=address, local=local, resume=True, trackers=not no_trackers,
                           budget=budget)
    _finish(result)


@app.command()
def slurm(
    preset: PresetArgument,
    nodes: Annotated[int, typer.Option(help="Nodes of the allocation; Ray's head runs on the first.")] = 1,
    gpus_per_node: Annotated[int | None, typer.Option(
        help="GPUs of each node (default: 1 for GPU trials, 0 for CPU trials).")] = None,
    cpus_per_node: Annotated[int | None, typer.Option(
        help="CPUs of each node (default: what the trials a node holds ask for).")] = None,
    time: Annotated[str | None, typer.Option(
        help="The job's time limit, as sbatch takes it (12:00:00, 1-00:00:00); the partition's by default.")] = None,
    partition: Annotated[str | None, typer.Option(help="The SLURM partition (the cluster's default).")] = None,
    account: Annotated[str | None, typer.Option(help="The SLURM account charged (your default).")] = None,
    grace: Annotated[int, typer.Option(
        help="Seconds of notice the driver gets before the time limit, to save the sweep.")] = 300,
    script: Annotated[Path | None, typer.Option(
        help="Where to write the job script (default: ./RUN-NAME.sbatch); its log goes beside it.")] = None,
    submit: Annotated[bool, typer.Option(
        "--submit/--no-submit", help="Submit the job (default), or write the script and the plan only.")] = True,
    samples: SamplesOption = None,
    max_epochs: MaxEpochsOption = None,
    concurrency: ConcurrencyOption = None,
    gpus_per_trial: GpusPerTrialOption = None,
    cpus_per_trial: CpusPerTrialOption = None,
    storage: StorageOption = None,
    name: NameOption = None,
    overrides: SetOption = None,
    data_dir: DataDirOption = None,
    seed: SeedOption = None,
    mlflow: MlflowOption = None,
    wandb: WandbOption = None,
    no_early_stopping: NoEarlyStoppingOption = False,
    warm_start: WarmStartOption = None,
    price_per_hour: PriceOption = None,
    budget: BudgetOption = None,
) -> None:
    """Run a preset as a sweep on a SLURM cluster: write the run's plan and a job script that
    starts Ray across the allocation and drives the sweep, then submit it. Submitting the same
    script again continues the sweep (after a time limit or a scancel)."""
    from sweeps.runfolder.plan import check_unused, create_run
    from sweeps.slurm import allocation_for, job_script

    with user_errors():
        plan = plan_of_options(preset, overrides, storage, data_dir, no_early_stopping, samples=samples,
                               concurrency=concurrency, gpus=gpus_per_trial, cpus=cpus_per_trial, name=name,
                               seed=seed, mlflow=mlflow, wandb=wandb, epochs=max_epochs, warm_start=warm_start,
                               price_per_hour=price_per_hour, budget=budget)
        allocation = allocation_for(plan, nodes, gpus_per_node, cpus_per_node, time, partition, account, grace)
        problem = check_writable(plan.storage)
        if problem:
            raise SweepError(f"results folder: {problem}")
        check_unused(plan.path)
        path = (script or Path(f"{plan.name}.sbatch")).expanduser().resolve()
        if path.is_dir():
            raise SweepError(f"--script {path} is a folder; give the job script's file name")
        if path.exists():
            raise SweepError(f"{path} exists; pass another --script or --name")
        sbatch = None
        if submit:
            import shutil

            sbatch = shutil.which("sbatch")
            if sbatch is None:
                raise SweepError("sbatch not found: run `sweep slurm` on the cluster's login node, or pass "
                                 "--no-submit to write the script only")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(job_script(plan, allocation, log_dir=path.parent))
        path.chmod(0o755)
        if sbatch is not None:  # SLURM checks the request before the run exists: nothing is left on a refusal
            checked = _sbatch([sbatch, "--test-only", str(path)], path)
            if checked.returncode != 0:
                path.unlink()
                lines = [ln for ln in checked.stderr.splitlines() if ln.strip()] or ["(no reason given)"]
                raise SweepError(f"SLURM refuses the job: {lines[-1].removeprefix('sbatch: error: ')}")
        create_run(plan, "sweep slurm")
        typer.echo(f"plan: {plan.path}")
        typer.echo(f"job script: {path}")
        if sbatch is None:
            typer.echo(f"submit it with: sbatch {shlex.quote(str(path))}")
            return
        submitted = _sbatch([sbatch, "--parsable", str(path)], path)
        if submitted.returncode != 0:
            lines = [ln for ln in submitted.stderr.splitlines() if ln.strip()] or ["(no reason given)"]
            raise SweepError(f"sbatch failed: {lines[-1]}; the plan is written: submit it with "
                             f"`sbatch {shlex.quote(str(path))}`")
        job = submitted.stdout.strip().split(";")[0]
        typer.echo(f"submitted job {job}: `squeue -j {job}` for the job, `sweep status "
                   f"{shlex.quote(plan.path)}` for the trials")
        typer.echo(f"to continue after the time limit or a scancel: sbatch {shlex.quote(str(path))}")


def _sbatch(command: list[str], script: Path):
    """sbatch's answer, in at most SBATCH_TIMEOUT_S (it retries a controller that is away)."""
    import subprocess

    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=SBATCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SweepError(f"SLURM's controller did not answer in {SBATCH_TIMEOUT_S} s; try again later "
                         f"(`sbatch {shlex.quote(str(script))}` once the plan is written)") from None


SBATCH_TIMEOUT_S = 60


def _finish(summary: SweepSummary) -> None:
    """Print the outcome; a sweep in which no trial finished exits 1."""
    best, ended = summary.best, summary.outcome
    typer.echo("")
    counts = {"trained to the end": ended.trained_to_end, "stopped early by ASHA": ended.stopped_early,
              "diverged or out of memory": ended.diverged + ended.out_of_memory, "errored": ended.errored,
              "unfinished": ended.unfinished, "not started": ended.not_started}
    typer.echo(f"trials: {ended.trials} - " + ", ".join(f"{n} {what}" for what, n in counts.items()
                                                         if n or what == "errored"))
    if best:
        typer.echo(f"best trial {best.trial_id}: {summary.metric}={best.value:.4f} after {best.epochs} epochs")
        typer.echo("config: " + json.dumps(best.params, sort_keys=True))
        typer.echo(f"train it alone: {summary.train_command}")
    if summary.cost:
        typer.echo(summary.cost)
    path = shlex.quote(summary.path)
    typer.echo(f"run: {summary.path}")
    typer.echo(f"next: analysis report {path}")
    if summary.budget:  # the sweep did what it was asked: stop at its limit; exits 0
        typer.echo(summary.budget)
        return
    if summary.interrupted:  # Ctrl-C: Tune saved its state and returned
        typer.echo(f"interrupted: {ended.unfinished + ended.not_started} trials still to run; "
                   f"continue with: sweep resume {path}", err=True)
        raise typer.Exit(130)
    if ended.not_started:
        typer.echo(f"note: the sweep ended with {ended.trials - ended.not_started} of its "
                   f"{ended.trials} planned trials", err=True)
    if not summary.finished:
        typer.echo(f"error: no trial finished; `sweep status {summary.path}` shows each one's error", err=True)
        raise typer.Exit(1)


@app.command()
def simulate(
    recorded: Annotated[str, typer.Argument(help="Run folder of `sweep run PRESET --no-early-stopping`, or a "
                                                 "curves file of benchmarks/tools/record_curves.py.")],
    settings: Annotated[list[str] | None, typer.Option(
        "--setting", help="A search setting to try (repeatable); default: all of them.")] = None,
    trials: Annotated[list[int] | None, typer.Option(
        "--trials", help="Trials per simulated sweep (repeatable; default 8, 20 and 50).", min=1)] = None,
    seeds: Annotated[int, typer.Option(help="Simulated sweeps per setting and budget.", min=1)] = 30,
    concurrency: Annotated[int | None, typer.Option(help="Trials at once (the recording's by default).",
                                                       min=1)] = None,
    grace_period: Annotated[int | None, typer.Option(help="ASHA's grace period (the preset's by default).",
                                                        min=1)] = None,
    reduction_factor: Annotated[float | None, typer.Option(
        help="ASHA's reduction factor (the preset's by default).", min=1.5)] = None,
    early_stopping: Annotated[EarlyStopping, typer.Option(
        help="With two objectives recorded: what ASHA ranks at a rung.")] = EarlyStopping.all_objectives,
) -> None:
    """Try search settings on recorded learning curves, in seconds and without training.

    Optuna's own samplers propose configurations; each is answered by the recorded curve of
    the nearest configuration, and ASHA stops trials as it would in a sweep. Prints, per
    setting and budget, the median and 10th percentile over seeds of the best trial's test
    accuracy, its mean, and the epochs spent; for a recording of two objectives, also the
    hypervolume of the front each sweep ends with (median, 10th percentile). Settings: resweep
    (the default: quasi-random Sobol points after the preset's initial configuration, and from
    30 trials on TPE after a random half), tpe-defaults (Optuna's: 10 random trials, no constant
    liar, no initial configuration), tpe-quarter (TPE after a random quarter of the trials,
    constant liar, the initial configuration first) and its variants tpe-no-liar,
    tpe-no-initial, tpe-startup-2, tpe-startup-10, tpe-half (a random half), random,
    random-initial (the initial configuration first), qmc (no initial configuration),
    qmc-initial (the initial configuration first); and gp (Optuna's Gaussian process after a
    random quarter, the initial configuration first), compared only when named: it takes about
    a second to propose each trial."""
    from sweeps.search import QUICK, SETTINGS
    from sweeps.sim.simulate import compare, load_recording

    with user_errors():
        unknown = [name for name in settings or [] if name not in SETTINGS]
        if unknown:
            raise SweepError(f"unknown setting {unknown[0]!r}; choose from {', '.join(SETTINGS)}")
        recording = load_recording(recorded)
        if any(n > len(recording.configs) * 4 for n in trials or []):
            raise SweepError(f"{len(recording.configs)} recorded configurations are too few for "
                             f"{max(trials or [0])} trials; record more or ask for fewer")
        chosen = [SETTINGS[name] for name in settings or QUICK]
        pareto = len(recording.objectives) > 1
        rule = "multi-objective ASHA" if early_stopping == EarlyStopping.all_objectives \
            else f"ASHA on {recording.metric}"
        ranked = (f"objectives {', '.join(f'{k} ({v})' for k, v in recording.objectives.items())}; {rule}" if pareto
                  else f"metric {recording.metric} ({recording.mode}); ASHA")
        typer.echo(f"{recording.source}: {len(recording.configs)} configurations of {recording.max_epochs} epochs, "
                   f"{ranked}, grace {grace_period or recording.grace_period}, reduction "
                   f"{reduction_factor or recording.reduction_factor:g}, "
                   f"{concurrency or recording.concurrency} at a time")
        summaries = compare(recording, chosen, trials or [8, 20, 50], seeds, concurrency=concurrency,
                            grace_period=grace_period, reduction_factor=reduction_factor,
                            rank_all=early_stopping == EarlyStopping.all_objectives)
    header = ["setting", "trials", "seeds", "median test", "p10 test", "mean test", "median epochs"]
    if len(recording.objectives) == 2:
        header += ["median hypervolume", "p10 hypervolume"]
    rows = [s.row() for s in summaries]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    typer.echo(_format_row(header, widths))
    for row in rows:
        typer.echo(_format_row(row, widths))


@app.command()
def status(run_path: Annotated[str, typer.Argument(help="Run folder (or URI) of a sweep, running or not.")],
           watch: Annotated[bool, typer.Option("--watch", help="Refresh the table until the sweep ends "
                                                               "(Ctrl-C stops watching, not the sweep).")] = False,
           every: Annotated[float, typer.Option(help="Seconds between refreshes with --watch.", min=0.5)] = 5.0
           ) -> None:
    """A row per trial: state, epochs done, best metric, stopped early or not."""
    import time

    from sweeps.runfolder.run import load_run

    with user_errors():
        lines, ended = _status_lines(load_run(run_path))
        typer.echo("\n".join(lines))
        if not watch:
            return
        terminal = sys.stdout.isatty()
        try:
            while not ended:
                time.sleep(every)
                fresh, ended = _status_lines(load_run(run_path))
                if fresh != lines:
                    if terminal:
                        typer.echo("\x1b[2J\x1b[H", nl=False)  # clear the screen, as `watch` does
                    typer.echo("\n".join(fresh))
                    lines = fresh
        except KeyboardInterrupt:
            return  # the sweep goes on; only the watching stops


def _status_lines(run_data) -> tuple[list[str], bool]:
    """The status table of a run as lines, and whether every planned trial has ended."""
    table = run_data.trials
    planned = run_data.plan.trials
    ended = int(table["status"].isin(["TERMINATED", "ERROR"]).sum()) if not table.empty else 0
    plan = run_data.plan
    lines = [f"{plan.preset}: {ended} of {planned} trials ended, metric {run_data.metric} "
             f"({run_data.mode}), max epochs {run_data.max_epochs}"]
    if not table.empty:
        money = " (no price: pass --price-per-hour to `sweep run`)"
        if plan.price_per_hour:
            money = f", {usd(run_data.spent)} at ${plan.price_per_hour:.3g} per {plan.unit[:-1]} ({plan.price_source})"
            forecast = run_data.forecast() if ended < planned else None
            money += f"; ~{usd(forecast)} at the end at the measured pace" if forecast is not None else ""
        if plan.budget_hours:
            share = run_data.trial_hours / plan.budget_hours
            money += f"; {share:.0%} of the budget ({plan.amount(plan.budget_hours)})"
        lines.append(f"spent: {run_data.trial_hours:.3g} {plan.unit} measured{money}")
    if table.empty:
        return lines + ["no trial has reported yet"], False
    cols = ["trial_id", "status", "epochs_trained", run_data.metric, "stopped_early", "retries", "node_losses"]
    rows = [[str(r[c]) if not isinstance(r[c], float) else f"{r[c]:.4f}" for c in cols] for _, r in table.iterrows()]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(cols)]
    lines += [_format_row(cols, widths)] + [_format_row(row, widths) for row in rows]
    return lines, ended >= planned


if __name__ == "__main__":
    app()
