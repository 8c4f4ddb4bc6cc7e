"""The markdown report of a sweep: summary, results table, curves, hyperparameters, the best
model on the test split and its Grad-CAM maps. Images are written beside `report.md` and
linked relatively, so the folder reads on GitHub as it is."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sweeps.prices import usd
from sweeps.runfolder.layout import REPORT_FILE, report_folder
from sweeps.runfolder.storage import is_uri, split_name
from trainer.config import ConfigError
from trainer.errors import DataError, TrainerError

from . import gradcam, plots
from .output import check_output_folder, replaced_folder
from .results import Run, load_run
from .stats import ComputeBought, Cost, compute_bought, confident_errors, inherited, param_importances, pareto_front
from .trained import TestEvaluation, evaluate_on_test, load_kept


class ReportError(RuntimeError):
    """The report cannot be written; one line."""


def _fmt(value) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _md_table(frame: pd.DataFrame) -> str:
    return frame.map(_fmt).to_markdown(index=False)


def _gain_over_initial(run: Run, best: pd.Series) -> str | None:
    """The best trial against the preset's initial configuration (trial 1, its source project's
    own); when ASHA stopped that trial early, at the epoch it reached, since a final value against
    an early one says little. None where the preset has no initial configuration (trial 1 is then
    a sampled one)."""
    metric = run.metric
    firsts = run.trials[run.trials["trial_index"] == 1]
    if not run.plan.initial or firsts.empty or math.isnan(firsts.iloc[0][metric]):
        return None
    first = firsts.iloc[0]
    head = f"- gain over the preset's own configuration (trial `{first['trial_id']}`"
    if not first["stopped_early"]:
        return f"{head}: {metric} = {first[metric]:.4f}): **{best[metric] - first[metric]:+.4f}**"
    epoch = int(first["epochs_trained"])
    curve = run.history[(run.history["trial_id"] == best["trial_id"]) & (run.history["epoch"] == epoch)]
    at_epoch = curve[metric].iloc[0] if not curve.empty and metric in curve else float("nan")
    if math.isnan(at_epoch):
        return f"{head} was stopped early by ASHA after {epoch} epochs at {metric} = {first[metric]:.4f})"
    return (f"{head} was stopped early by ASHA after {epoch} epochs at {metric} = {first[metric]:.4f}; the best "
            f"trial had {at_epoch:.4f} at that epoch): **{at_epoch - first[metric]:+.4f}** at equal epochs")


def _bought_line(bought: ComputeBought, unit: str, price_per_hour: float = 0.0) -> str:
    total, reached = bought.hours[-1], bought.hours[bought.reached_at]

    def money(hours: float) -> str:
        return f" ({usd(hours * price_per_hour)})" if price_per_hour else ""

    return (f"- what the compute bought: within 0.5 points of the final best ({bought.best_so_far[-1]:.4f}) "
            f"after {reached:.3g}{money(reached)} of {total:.3g} {unit}{money(total)} "
            f"({reached / max(total, 1e-12):.0%}); training the same trials to the end would have taken "
            f"{bought.fifo_hours:.3g}{money(bought.fifo_hours)}")


def warm_start_section(c: Context) -> list[str]:
    run = c.run
    warm = run.plan.warm_start
    if not warm:
        return []
    metric = run.metric
    scored = warm.trials
    pruned = sum(t.pruned for t in scored)
    lines = ["## Warm start", "",
             f"This sweep went on from `{warm.source}` ({warm.preset} on {warm.dataset}): "
             f"its {len(scored)} scored trials ({len(scored) - pruned} finished, {pruned} stopped early) informed "
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


@dataclass(frozen=True)
class Context:
    """What every section may use: the run, and what is worked out once for all of them."""
    run: Run
    out: Path  # the folder being written: a section's pictures go here
    best: pd.Series | None  # the best trial that kept a checkpoint
    cost: Cost
    bought: ComputeBought | None
    top_trials: pd.DataFrame
    gradcam_samples: int
    data_dir: Path | None  # where the run's data is here, when not where the trials read it


def write_report(run_path: str, out_dir: Path | None = None, top: int = 5, gradcam_samples: int = 4,
                 data_dir: Path | None = None) -> Path:
    """Write `report.md` and its pictures for the run at `run_path`; returns the report's path.
    The sections are SECTIONS, in order, each a function of the `Context` returning its lines."""
    run = load_run(run_path)
    if run.trials.empty:
        raise ReportError(f"{run_path}: no trial has reported yet; wait for the first epoch, or check "
                          f"`sweep status {run_path}`")
    target = Path(out_dir) if out_dir else default_report_dir(run.path)
    check_output_folder(target, "--out")
    cost = Cost.of(run)
    with replaced_folder(target) as out:  # written whole in a folder beside it, then moved into place
        context = Context(run, out, run.best(with_model=True), cost, compute_bought(run, cost.hours_full),
                          run.ranked().head(top), gradcam_samples, data_dir)
        lines = [line for section in SECTIONS for line in section(context)]
        (out / REPORT_FILE).write_text("\n".join(lines).rstrip() + "\n")
    return target / REPORT_FILE


def summary_section(c: Context) -> list[str]:
    run, best, cost, bought = c.run, c.best, c.cost, c.bought
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
             f"{cost.hours_used:.3g} used, about {cost.hours_full:.3g} without early stopping"
             + (f"; **{usd(run.spent)} spent**, about {usd(cost.hours_full * plan.price_per_hour)} without, at "
                f"${plan.price_per_hour:.3g} per {cost.unit[:-1]} ({plan.price_source})"
                if plan.price_per_hour else "")
             + (f"; the plan estimated {plan.amount(plan.estimate_hours)} for its epochs (at most "
                f"{plan.amount(plan.estimate_most_hours)})" if plan.estimate_hours else "")
             + (f"; budget {plan.amount(plan.budget_hours)}, {run.trial_hours / plan.budget_hours:.0%} "
                f"spent" if plan.budget_hours else ""),
             "- search space: " + ", ".join(f"`{k}` {next(iter(v))}{next(iter(v.values()))}"
                                            for k, v in plan.search.items())]
    if best is not None:
        lines.append(f"- **best: trial `{best['trial_id']}`, {metric} = {best[metric]:.4f}** after "
                     f"{best['epochs_trained']} epochs, with "
                     + ", ".join(f"`{k}={_fmt(best[k])}`" for k in run.search_keys))
        gain = _gain_over_initial(run, best)
        if gain:
            lines.append(gain)
    if bought is not None:
        lines.append(_bought_line(bought, cost.unit, plan.price_per_hour))
    return lines + [""]


def top_trials_section(c: Context) -> list[str]:
    run, top_trials = c.run, c.top_trials
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


def pareto_section(c: Context) -> list[str]:
    """A sweep of several objectives: its Pareto front, drawn for the first two, and listed."""
    run, out = c.run, c.out
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
    front = front.assign(stopped_at=[f"epoch {int(n)}" if early else "" for n, early
                                     in zip(front["epochs_trained"], front["stopped_early"])])
    columns = ["trial_id", "status", "epochs_trained", "stopped_at", *objectives, *run.search_keys]
    table = front.sort_values(x, kind="stable")[list(dict.fromkeys(columns))]
    early = front[front["stopped_early"].astype(bool)]
    stops = (f"{len(early)} of the front's {len(front)} were stopped early, at the rung in `stopped_at` (hollow in "
             f"the picture): they are there with what they reached before." if len(early) else
             "Every trial on the front trained to its last epoch.")
    return ["## Pareto front", "",
            f"Objectives {names}: {len(front)} of {len(scored)} trials are on the front (no other trial is at "
            f"least as good on every objective and better on one). `{y}` is each trial's best epoch. Early "
            f"stopping: {run.plan.stopping_rule}. {stops}", "",
            "![pareto front](pareto.png)", "", _md_table(table), ""]


def curves_section(c: Context) -> list[str]:
    run, top_trials, bought, cost, out = c.run, c.top_trials, c.bought, c.cost, c.out
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
                            cost.unit, out / "compute.png", price_per_hour=run.plan.price_per_hour,
                            budget_hours=run.plan.budget_hours)
        lines += ["What the compute bought: the best value so far against the trial-hours spent, in the order the "
                  "epochs ended:", "", "![best so far against hours](compute.png)", ""]
    return lines


def hyperparameters_section(c: Context) -> list[str]:
    run, out = c.run, c.out
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


def best_model_section(c: Context) -> list[str]:
    run, best = c.run, c.best
    if best is None:
        return []
    lines = [f"## Best model on the test split (trial `{best['trial_id']}`)", "",
             f"Its checkpoint of epoch {int(best['best_epoch'])}, where {run.metric} was best "
             f"({best[run.metric]:.4f}):", ""]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        trained = load_kept(best["checkpoint"])
        evaluation, used = evaluate_on_test(trained, device, c.data_dir), trained.checkpoint
    except (DataError, TrainerError, ConfigError, OSError) as err:
        return lines + [f"The test split could not be evaluated here: {str(err).splitlines()[0]}"]
    if used != best["checkpoint"]:
        lines = [lines[0], "", f"Its checkpoint of epoch {int(best['best_epoch'])} is damaged; this is its kept "
                               f"checkpoint `{split_name(used)[1]}` instead:", ""]
    if len(evaluation.labels):
        lines += _test_section(evaluation, c.out, c.gradcam_samples)
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


# The report's sections, in the order they are written. A new section is a function of the
# Context returning its markdown lines, listed here.
def population_section(c: Context) -> list[str]:
    """Population-based training: the members' learning rates, the best's lineage and its schedule."""
    from sweeps.errors import SweepError
    from sweeps.runfolder.schedule import found_schedule

    run = c.run
    if not run.plan.population or run.history.empty:
        return []
    try:
        found = found_schedule(run)
    except SweepError as err:
        return ["## Population-based training", "", f"No schedule yet: {err}.", ""]
    members = list(run.ranked()["trial_id"])
    lineages = {}
    for member in members:
        try:
            lineages[member] = found_schedule(run, member).trained_by()
        except SweepError:
            continue  # no epoch yet, or some missing: no lineage to draw
    plots.population(run.history, members, lineages, found.trial_id, c.out / "population.png",
                     plots.trial_colours(members))
    taken = sum(1 for _, r in run.history.iterrows() if str(r.get("lineage") or "nan") != "nan"
                and r.get("replayed")) if "lineage" in run.history else 0
    stretches = found.describe_lineage(quote="`")
    return ["## Population-based training", "",
            f"{run.plan.stopping_rule}. Every member's learning rate over the epochs of its weights, and every "
            f"member's lineage; the best's ({stretches}) in black:", "", "![population](population.png)", "",
            f"The best member's schedule, replayed alone from scratch (`analysis schedule {run.path}`):", "",
            "```", found.command(run), "```", "",
            *([f"{taken} epochs in the members' results are inherited ones (replayed from the weights they took)."]
              if taken else []), ""]


SECTIONS: list[Callable[[Context], list[str]]] = [
    summary_section, warm_start_section, top_trials_section, pareto_section, curves_section,
    population_section, hyperparameters_section, best_model_section]
