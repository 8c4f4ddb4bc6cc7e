"""The markdown report of a sweep: summary, results table, curves, hyperparameters, the best
model on the test split and its Grad-CAM maps. Images are written beside `report.md` and
linked relatively, so the folder reads on GitHub as it is."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from sweeps.runfolder.layout import CHECKPOINT_DIR, REPORT_FILE, report_folder
from sweeps.runfolder.plan import EarlierTrial
from sweeps.runfolder.storage import is_uri, join, list_folder, local_folder, split_name
from sweeps.search import optuna_distributions
from trainer.checkpoint import load_checkpoint
from trainer.config import ConfigError
from trainer.datasets import load_data
from trainer.errors import CheckpointError, DataError, TrainerError
from trainer.loop import eval_loader, load_model, predict
from trainer.metrics import direction, sign

from . import gradcam, plots
from .output import check_output_folder, replaced_folder
from .results import Run, load_run


class ReportError(RuntimeError):
    """The report cannot be written; one line."""


@dataclass
class TestEvaluation:
    """The best checkpoint evaluated on the test split."""
    model: torch.nn.Module
    classes: list[str]
    mean: tuple
    std: tuple
    inputs: torch.Tensor  # the model's input of every test image (normalised, eval transform)
    labels: np.ndarray
    logits: torch.Tensor
    counts: pd.DataFrame  # images per class and split

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(1).numpy()

    @property
    def accuracy(self) -> float:
        return float((self.predictions == self.labels).mean())

    @property
    def loss(self) -> float:
        return float(F.cross_entropy(self.logits, torch.from_numpy(self.labels)).item())


def best_trial(run: Run) -> pd.Series | None:
    return run.best(with_model=True)


def evaluate_checkpoint(checkpoint: str, device: torch.device, data_dir: Path | None = None) -> TestEvaluation:
    """The checkpoint (a folder or a URI) on its run's test split; `data_dir` where the data
    is somewhere else here than where the trial trained."""
    with local_folder(checkpoint) as folder:
        state = load_checkpoint(folder, map_location="cpu")
    model, config, _ = load_model(state, device="cpu")
    config.device = device.type
    if data_dir is not None:
        config.data_dir = str(data_dir)
    data = load_data(config)
    loader = eval_loader(data.test, config, data, device)
    model = model.to(device)
    logits = predict(model, loader, config, device)
    inputs = torch.cat([x.cpu() for x, _ in loader]) if len(data.test) else torch.zeros(0)
    counts = pd.DataFrame({name: np.bincount(split.labels.numpy(), minlength=len(data.classes))
                           for name, split in (("train", data.train), ("val", data.val), ("test", data.test))},
                          index=data.classes)
    return TestEvaluation(model.float().eval(), list(data.classes), data.mean, data.std, inputs,
                          data.test.labels.numpy(), logits, counts)


def evaluate_kept_checkpoint(checkpoint: str, device: torch.device, data_dir: Path | None = None
                             ) -> tuple[TestEvaluation, str]:
    """`evaluate_checkpoint` of `checkpoint`, or where it does not load, of the trial's other kept
    checkpoints (newest first), each failure said on stderr; returns the evaluation and the one used."""
    trial, name = split_name(checkpoint)
    others = sorted((n for n, is_dir in list_folder(trial) if is_dir and CHECKPOINT_DIR.match(n) and n != name),
                    reverse=True)
    candidates = [checkpoint, *(join(trial, n) for n in others)]
    for i, candidate in enumerate(candidates):
        try:
            return evaluate_checkpoint(candidate, device, data_dir), candidate
        except CheckpointError as err:
            instead = "trying the trial's next kept checkpoint" if i + 1 < len(candidates) else \
                "no other checkpoint of the trial is kept"
            logging.getLogger("resweep").warning(f"{err}; {instead}")
            if i + 1 == len(candidates):
                raise
    raise CheckpointError(f"{checkpoint}: no checkpoint")  # not reached: the list holds `checkpoint`


def _fmt(value) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _md_table(frame: pd.DataFrame) -> str:
    return frame.map(_fmt).to_markdown(index=False)


def param_importances(run: Run) -> dict[str, float]:
    """fANOVA importances over the trials' best values (stopped-early trials included: their
    values are what ASHA judged them on). Empty when there are too few trials."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = run.scored[run.scored["status"] == "TERMINATED"]
    if len(trials) < 3 or not run.search_keys:
        return {}
    distributions = optuna_distributions(run.plan.search)
    study = optuna.create_study(direction=direction(run.mode))
    for _, row in trials.iterrows():
        params = {k: (row[k].item() if hasattr(row[k], "item") else row[k]) for k in distributions}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions,
                                                  value=float(row[run.metric])))
    try:
        return optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(
            seed=0))
    except (RuntimeError, ValueError):
        return {}


@dataclass
class ComputeBought:
    """The best value so far against the trial-hours spent, epoch by epoch in the order the
    epochs ended; where the final best was first reached within 0.5 points."""
    hours: np.ndarray
    best_so_far: np.ndarray
    reached_at: int  # index of the first epoch within 0.5 points of the final best
    fifo_hours: float  # the same trials trained to the end

    def line(self, unit: str) -> str:
        total, reached = self.hours[-1], self.hours[self.reached_at]
        return (f"- what the compute bought: within 0.5 points of the final best ({self.best_so_far[-1]:.4f}) "
                f"after {reached:.3g} of {total:.3g} {unit} ({reached / max(total, 1e-12):.0%}); training the "
                f"same trials to the end would have taken {self.fifo_hours:.3g}")


def compute_bought(run: Run, fifo_hours: float) -> ComputeBought | None:
    history = run.history
    metric = run.metric
    if history.empty or metric not in history or "epoch_time_s" not in history:
        return None
    rows = history.dropna(subset=[metric, "epoch_time_s"])
    if rows.empty:
        return None
    if "finished_at" in rows and rows["finished_at"].notna().all():
        rows = rows.sort_values("finished_at", kind="stable")
    else:  # runs from before epochs were timed: in trial order
        order = {t: i for i, t in enumerate(run.trials["trial_id"])}
        rows = rows.assign(_order=rows["trial_id"].map(order)).sort_values(["_order", "epoch"], kind="stable")
    scale = float(run.plan.gpu) or 1.0
    hours = np.cumsum(rows["epoch_time_s"].to_numpy(float) * scale) / 3600
    values = rows[metric].to_numpy(float)
    best = np.maximum.accumulate(values) if run.mode == "max" else np.minimum.accumulate(values)
    gap = (best[-1] - best) if run.mode == "max" else (best - best[-1])
    reached = int(np.argmax(gap <= 0.005 + 1e-12))
    return ComputeBought(hours, best, reached, fifo_hours)


def _gain_over_seed(run: Run, best: pd.Series) -> str | None:
    """The best trial against the preset's own configuration (trial 1); when ASHA stopped the
    seed early, at the epoch it reached, since a final value against an early one says little.
    None where the preset has no configuration of its own (trial 1 is then a sampled one)."""
    metric = run.metric
    seeds = run.trials[run.trials["trial_index"] == 1]
    if not run.plan.initial or seeds.empty or math.isnan(seeds.iloc[0][metric]):
        return None
    seed = seeds.iloc[0]
    head = f"- gain over the preset's own configuration (trial `{seed['trial_id']}`"
    if not seed["stopped_early"]:
        return f"{head}: {metric} = {seed[metric]:.4f}): **{best[metric] - seed[metric]:+.4f}**"
    epoch = int(seed["epochs_trained"])
    curve = run.history[(run.history["trial_id"] == best["trial_id"]) & (run.history["epoch"] == epoch)]
    at_epoch = curve[metric].iloc[0] if not curve.empty and metric in curve else float("nan")
    if math.isnan(at_epoch):
        return f"{head} was stopped early by ASHA after {epoch} epochs at {metric} = {seed[metric]:.4f})"
    return (f"{head} was stopped early by ASHA after {epoch} epochs at {metric} = {seed[metric]:.4f}; the best "
            f"trial had {at_epoch:.4f} at that epoch): **{at_epoch - seed[metric]:+.4f}** at equal epochs")


def inherited(run: Run) -> list[tuple[str, EarlierTrial]]:
    """(this sweep's trial id, the earlier trial) for each configuration a warm start took from
    an earlier sweep and trained again, matched on the parameters."""
    warm = run.plan.warm_start
    if warm is None:
        return []
    earlier = {t.trial_id: t for t in warm.trials}
    pairs = []
    for earlier_id in warm.first:
        params = earlier[earlier_id].params
        for _, row in run.trials.iterrows():
            if all(_same(row.get(k), v) for k, v in params.items()):
                pairs.append((str(row["trial_id"]), earlier[earlier_id]))
                break
    return pairs


def _same(a, b) -> bool:
    a = a.item() if hasattr(a, "item") else a
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def _warm_start_section(run: Run) -> list[str]:
    warm = run.plan.warm_start
    if not warm:
        return []
    metric = run.metric
    seeded = warm.trials
    pruned = sum(t.pruned for t in seeded)
    lines = ["## Warm start", "",
             f"This sweep went on from `{warm.source}` ({warm.preset} on {warm.dataset}): "
             f"its {len(seeded)} scored trials ({len(seeded) - pruned} finished, {pruned} stopped early) seeded "
             f"the Optuna search before the first trial"
             + ("; left out: " + ", ".join(f"{n} {why}" for why, n in warm.skipped.items())
                if warm.skipped else "") + ".", ""]
    pairs = inherited(run)
    if pairs:
        lines += ["Trials inherited from it: its best configurations, trained again first:", "",
                  f"| trial | inherited from | {metric} then | {metric} now | epochs now |", "|---|---|---|---|---|"]
        for trial_id, earlier in pairs:
            row = run.trials[run.trials["trial_id"] == trial_id].iloc[0]
            lines.append(f"| `{trial_id}` | `{earlier.trial_id}` | {earlier.value:.4f} | "
                         f"{_fmt(row[metric])} | {int(row['epochs_trained'])} |")
        lines.append("")
    return lines


def default_report_dir(run_path: str) -> Path:
    """RUN/report for a run folder; ./reports/NAME for a run behind a URI."""
    if is_uri(run_path):
        return Path("reports") / split_name(run_path)[1]
    return Path(report_folder(run_path))


@dataclass
class Cost:
    """What the sweep spent, and what it would have without early stopping."""
    epochs_used: int
    epochs_full: int
    hours_used: float  # GPU-hours where trials had GPUs, else CPU-hours (epoch times summed)
    hours_full: float
    unit: str  # "GPU-hours" or "CPU-hours"

    @classmethod
    def of(cls, run: Run) -> Cost:
        trials, gpu = run.trials, float(run.plan.gpu)
        scale = gpu if gpu > 0 else 1.0
        epochs = trials["epochs_trained"]
        per_epoch = trials["time_s"] / epochs.where(epochs > 0)
        return cls(epochs_used=int(epochs.sum()), epochs_full=len(trials) * run.max_epochs,
                   hours_used=float(np.nansum(trials["time_s"])) / 3600 * scale,
                   hours_full=float(np.nansum(per_epoch * run.max_epochs)) / 3600 * scale,
                   unit="GPU-hours" if gpu > 0 else "CPU-hours")


def write_report(run_path: str, out_dir: Path | None = None, top: int = 5, gradcam_samples: int = 4,
                 data_dir: Path | None = None) -> Path:
    """Write `report.md` and its pictures for the run at `run_path`; returns the report's path.
    One function per section below, each returning its markdown lines."""
    run = load_run(run_path)
    if run.trials.empty:
        raise ReportError(f"{run_path}: no trial has reported yet; wait for the first epoch, or check "
                          f"`sweep status {run_path}`")
    target = Path(out_dir) if out_dir else default_report_dir(run.path)
    check_output_folder(target, "--out")
    best, cost = best_trial(run), Cost.of(run)
    bought = compute_bought(run, cost.hours_full)
    top_trials = run.ranked().head(top)
    with replaced_folder(target) as out:  # written whole in a folder beside it, then moved into place
        lines = [*summary_section(run, best, cost, bought),
                 *_warm_start_section(run),
                 *top_trials_section(run, top_trials),
                 *pareto_section(run, out),
                 *curves_section(run, top_trials, bought, cost, out),
                 *hyperparameters_section(run, out),
                 *best_model_section(run, best, out, gradcam_samples, data_dir)]
        (out / REPORT_FILE).write_text("\n".join(lines).rstrip() + "\n")
    return target / REPORT_FILE


def summary_section(run: Run, best: pd.Series | None, cost: Cost, bought: ComputeBought | None) -> list[str]:
    plan, trials, metric, ended = run.plan, run.trials, run.metric, run.outcome()
    train = plan.train
    lines = [f"# Sweep report: {plan.preset}", "", plan.description, "",
             f"- run: `{run.path}` (report written {time.strftime('%Y-%m-%d %H:%M')})",
             f"- dataset **{train['dataset']}**, model **{train['model']}**"
             + (f" ({train['head']} head, pretrained)" if train.get("pretrained") else "")
             + f", {train['image_size']}px, up to {run.max_epochs} epochs, metric `{metric}` ({run.mode})",
             f"- trials: {len(trials)} — {ended.trained_to_end} completed, {ended.stopped_early} stopped early by "
             f"ASHA, {ended.errored} errored, {ended.diverged} diverged, "
             + (f"{ended.out_of_memory} out of GPU memory, " if ended.out_of_memory else "")
             + f"{ended.unfinished} still running or pending; {ended.retries} retries"
             + (f", {ended.node_losses} node losses (spot reclaims: continued elsewhere)" if ended.node_losses else ""),
             f"- epochs trained: {cost.epochs_used} of {cost.epochs_full} without early stopping "
             f"({cost.epochs_used / max(cost.epochs_full, 1):.0%})",
             f"- {cost.unit}{'' if cost.unit == 'GPU-hours' else ' (epoch times of every trial, summed)'}: "
             f"{cost.hours_used:.3g} used, about {cost.hours_full:.3g} without early stopping",
             "- search space: " + ", ".join(f"`{k}` {next(iter(v))}{next(iter(v.values()))}"
                                            for k, v in plan.search.items())]
    if best is not None:
        lines.append(f"- **best: trial `{best['trial_id']}`, {metric} = {best[metric]:.4f}** after "
                     f"{best['epochs_trained']} epochs, with "
                     + ", ".join(f"`{k}={_fmt(best[k])}`" for k in run.search_keys))
        gain = _gain_over_seed(run, best)
        if gain:
            lines.append(gain)
    if bought is not None:
        lines.append(bought.line(cost.unit))
    return lines + [""]


def top_trials_section(run: Run, top_trials: pd.DataFrame) -> list[str]:
    metric = run.metric
    columns = ["trial_id", "status", "epochs_trained", metric, "stopped_early", "test_acc", "params", "latency_ms",
               *run.search_keys]
    table = top_trials[list(dict.fromkeys(c for c in columns if c in top_trials))].rename(
        columns={"test_acc": "test_acc (last epoch)"})
    return [f"## Top {len(top_trials)} trials", "", _md_table(table), "",
            f"`{metric}` is each trial's best epoch; `test_acc (last epoch)` is measured after its last epoch "
            f"(trials stopped early have none). `params` and `latency_ms` (inference, batch 1, on the trial's "
            f"device) are what the model costs to run; `analysis table` adds GFLOPs and images/s at batch 64. The "
            f"test section below evaluates the best trial's checkpoint of its best epoch.", ""]


def pareto_front(trials: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """The trials no other trial beats on every objective at once (at least as good on all,
    better on one), in the order given."""
    signs = np.array([sign(mode) for mode in objectives.values()])
    values = trials[list(objectives)].to_numpy(float) * signs  # larger is better on every column
    on_front = [not any((other >= mine).all() and (other > mine).any() for other in values) for mine in values]
    return trials[on_front]


def pareto_section(run: Run, out: Path) -> list[str]:
    """A sweep of several objectives: its Pareto front, drawn for the first two, and listed."""
    objectives = run.plan.objectives
    if not objectives:
        return []
    scored = run.scored.dropna(subset=list(objectives))
    if scored.empty:
        return ["## Pareto front", "", "No trial has a value of every objective yet.", ""]
    front = pareto_front(scored, objectives)
    x, y = list(objectives)[1], list(objectives)[0]  # the cost across, the metric up
    plots.pareto(scored, front, x, y, out / "pareto.png")
    names = ", ".join(f"`{k}` ({v})" for k, v in objectives.items())
    columns = ["trial_id", "status", "epochs_trained", *objectives, *run.search_keys]
    table = front.sort_values(x, kind="stable")[list(dict.fromkeys(columns))]
    return ["## Pareto front", "",
            f"Objectives {names}: {len(front)} of {len(scored)} trials are on the front (no other trial is at "
            f"least as good on every objective and better on one). `{y}` is each trial's best epoch; trials "
            f"stopped early by ASHA are there with what they reached before they were stopped.", "",
            "![pareto front](pareto.png)", "", _md_table(table), ""]


def curves_section(run: Run, top_trials: pd.DataFrame, bought: ComputeBought | None, cost: Cost,
                   out: Path) -> list[str]:
    history, metric = run.history, run.metric
    if history.empty:
        return []
    colours = plots.trial_colours(list(run.ranked()["trial_id"]))  # one colour per trial in every picture
    plots.learning_curves(history, list(top_trials["trial_id"]), out / "curves_top.png", colours)
    plots.asha_picture(history, run.trials, metric, out / "asha.png", colours)
    lines = ["## Learning curves", "",
             f"Train and validation loss and accuracy of the top {len(top_trials)} trials:", "",
             "![learning curves](curves_top.png)", "",
             "Every trial's validation curve; ASHA's early stops are dashed:", "", "![every trial](asha.png)", ""]
    if bought is not None:
        plots.compute_curve(bought.hours, bought.best_so_far, bought.reached_at, bought.fifo_hours, metric,
                            cost.unit, out / "compute.png")
        lines += ["What the compute bought: the best value so far against the trial-hours spent, in the order the "
                  "epochs ended:", "", "![best so far against hours](compute.png)", ""]
    return lines


def hyperparameters_section(run: Run, out: Path) -> list[str]:
    scored = run.trials.dropna(subset=[run.metric])
    if not run.search_keys or scored.empty:
        return []
    plots.metric_vs_params(scored, run.metric, run.plan.search, out / "params.png")
    lines = ["## Hyperparameters", "", "![metric against each parameter](params.png)", ""]
    values = param_importances(run)
    if not values:
        return lines + ["Parameter importances need at least 3 finished trials.", ""]
    plots.importances(values, out / "importances.png")
    lines += ["Parameter importances (Optuna's fANOVA over the trials' best values):", "",
              "| parameter | importance |\n|---|---|"]
    lines += [f"| `{key}` | {value:.3f} |" for key, value in values.items()]
    return lines + ["", "![importances](importances.png)", ""]


def best_model_section(run: Run, best: pd.Series | None, out: Path, gradcam_samples: int,
                       data_dir: Path | None) -> list[str]:
    if best is None:
        return []
    lines = [f"## Best model on the test split (trial `{best['trial_id']}`)", "",
             f"Its checkpoint of epoch {int(best['best_epoch'])}, where {run.metric} was best "
             f"({best[run.metric]:.4f}):", ""]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        evaluation, used = evaluate_kept_checkpoint(best["checkpoint"], device, data_dir)
    except (DataError, TrainerError, ConfigError, OSError) as err:
        return lines + [f"The test split could not be evaluated here: {str(err).splitlines()[0]}"]
    if used != best["checkpoint"]:
        lines = [lines[0], "", f"Its checkpoint of epoch {int(best['best_epoch'])} is damaged; this is its kept "
                               f"checkpoint `{split_name(used)[1]}` instead:", ""]
    if len(evaluation.labels):
        lines += _test_section(evaluation, out, gradcam_samples)
    return lines


def _test_section(ev: TestEvaluation, out: Path, samples: int) -> list[str]:
    lines = [f"- accuracy **{ev.accuracy:.4f}**, loss {ev.loss:.4f} on {len(ev.labels)} test images", ""]
    classes = ev.classes
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(matrix, (ev.labels, ev.predictions), 1)
    plots.confusion(matrix, classes, out / "confusion.png")
    lines += ["![confusion matrix](confusion.png)", ""]
    per_class = pd.DataFrame({"class": classes, "test images": matrix.sum(1),
                              "accuracy": np.diag(matrix) / np.maximum(matrix.sum(1), 1)})
    per_class = per_class.sort_values("accuracy", kind="stable")
    shown = per_class if len(classes) <= 20 else per_class.head(10)
    lines += [f"Per-class accuracy{' (the 10 worst classes)' if len(classes) > 20 else ''}:", "",
              _md_table(shown), ""]
    plots.class_distribution(ev.counts, out / "class_distribution.png")
    lines += ["Images per class in each split:", "", "![class distribution](class_distribution.png)", ""]
    wrong = confident_errors(ev)
    images = gradcam.denormalise(ev.inputs, ev.mean, ev.std)
    if len(wrong):
        picks = wrong[:20]
        confidence = ev.logits.softmax(1).max(1).values.numpy()
        plots.image_grid(images[picks], [f"pred {classes[ev.predictions[i]]} {confidence[i]:.2f}\n"
                                         f"true {classes[ev.labels[i]]}" for i in picks], out / "misclassified.png")
        lines += [f"Misclassified test images ({len(wrong)} in all): the {len(picks)} most confident errors, "
                  f"taken in turn from each true class:", "", "![misclassified](misclassified.png)", ""]
    lines += gradcam_section(ev, images, wrong, out, samples)
    return lines


def confident_errors(ev: TestEvaluation) -> np.ndarray:
    """Indices of the misclassified test images, the most confident errors first and taken in
    turn from each true class (the first errors of a test split sorted by class are all one
    class's)."""
    confidence = ev.logits.softmax(1).max(1).values.numpy()
    wrong = np.flatnonzero(ev.predictions != ev.labels)
    by_class = [sorted(wrong[ev.labels[wrong] == c], key=lambda i: -confidence[i])
                for c in np.unique(ev.labels[wrong])]
    by_class.sort(key=lambda errors: -confidence[errors[0]])
    order = [errors[k] for k in range(max(map(len, by_class), default=0)) for errors in by_class if k < len(errors)]
    return np.array(order, dtype=np.int64)


def gradcam_section(ev: TestEvaluation, images: np.ndarray, wrong: np.ndarray, out: Path, samples: int) -> list[str]:
    if samples <= 0:
        return []
    lines = ["## Grad-CAM of the best model", ""]
    classes, model = ev.classes, ev.model
    probs = ev.logits.softmax(1)
    picks = np.linspace(0, len(ev.labels) - 1, num=min(samples, len(ev.labels))).astype(int)
    k = min(4, len(classes))
    rows = []
    for i in picks:
        top_p, top_c = probs[i].topk(k)
        maps = gradcam.cam_maps(model, ev.inputs[i:i + 1].repeat(k, 1, 1, 1), top_c.tolist())
        row = [(images[i], f"true {classes[ev.labels[i]]}")]
        row += [(gradcam.overlay(images[i], maps[j]), f"{classes[c]} {p:.2f}")
                for j, (p, c) in enumerate(zip(top_p.tolist(), top_c.tolist()))]
        rows.append(row)
    plots.cam_rows(rows, out / "gradcam_top4.png")
    lines += [f"Sample test images with the maps of the top-{k} predicted classes (last residual stage):", "",
              "![grad-cam top classes](gradcam_top4.png)", ""]
    if len(wrong):
        rows = []
        for i in wrong[:samples]:
            pred, true = int(ev.predictions[i]), int(ev.labels[i])
            maps = gradcam.cam_maps(model, ev.inputs[i:i + 1].repeat(2, 1, 1, 1), [pred, true])
            rows.append([(images[i], "image"), (gradcam.overlay(images[i], maps[0]), f"pred {classes[pred]}"),
                         (gradcam.overlay(images[i], maps[1]), f"true {classes[true]}")])
        plots.cam_rows(rows, out / "gradcam_misclassified.png")
        lines += ["Misclassified images: where the model looked for the class it chose, and for the true one:", "",
                  "![grad-cam misclassified](gradcam_misclassified.png)", ""]
    rows = []
    for i in picks:
        pred = int(ev.predictions[i])
        row = [(images[i], f"pred {classes[pred]}")]
        for s, layer in enumerate(gradcam.stage_layers(model), start=1):
            mask = gradcam.cam_maps(model, ev.inputs[i:i + 1], [pred], layer=layer)[0]
            row.append((gradcam.overlay(images[i], mask), f"stage {s}"))
        rows.append(row)
    plots.cam_rows(rows, out / "gradcam_stages.png")
    lines += ["One map per residual stage (layers 1-4) for the predicted class:", "",
              "![grad-cam per stage](gradcam_stages.png)", ""]
    return lines
