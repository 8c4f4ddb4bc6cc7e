"""Headless matplotlib figures of a sweep; every function writes one PNG and returns its path."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from trainer.metrics import BY_NAME  # noqa: E402


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def trial_colours(trial_ids: list[str]) -> dict[str, tuple]:
    """One colour per trial, in the given order (best first): every picture of a report draws a
    trial in the same colour."""
    palette = [colour for name in ("tab10", "Dark2", "Set1")
               for colour in cast("list[tuple]", cast(ListedColormap, plt.get_cmap(name)).colors)]
    return {trial_id: palette[i % len(palette)] for i, trial_id in enumerate(trial_ids)}


def _loss_scale(ax, values: pd.Series) -> None:
    """Losses on a log axis: one diverging epoch (30 against 0.1) no longer flattens the rest."""
    values = values.dropna()
    if len(values) and (values > 0).all() and values.max() / values.min() > 20:
        ax.set_yscale("log")


def learning_curves(history: pd.DataFrame, trial_ids: list[str], path: Path,
                    colours: dict[str, tuple] | None = None) -> Path:
    """Train/val loss and accuracy against epoch, one line per trial."""
    colours = colours or trial_colours(trial_ids)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    panels = [(name, BY_NAME[name].label) for name in ("train_loss", "val_loss", "train_acc", "val_acc")]
    shown = history[history["trial_id"].isin(trial_ids)]
    for ax, (column, title) in zip(axes.flat, panels):
        for trial_id in trial_ids:
            rows = history[history["trial_id"] == trial_id].sort_values("epoch")
            if column in rows and rows[column].notna().any():
                ax.plot(rows["epoch"], rows[column], marker=".", label=trial_id, color=colours.get(trial_id))
        if "loss" in column and column in shown:
            _loss_scale(ax, shown[column])
        ax.set_title(title)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    labelled = next((ax for ax in axes.flat if ax.get_legend_handles_labels()[0]), None)
    if labelled is not None:  # on the first panel that has a line (older runs lack train metrics)
        labelled.legend(fontsize=8)
    return _save(fig, path)


def asha_picture(history: pd.DataFrame, trials: pd.DataFrame, metric: str, path: Path,
                 colours: dict[str, tuple] | None = None) -> Path:
    """Every trial's validation curve; the ones ASHA stopped early dashed and ended with an x."""
    colours = colours or trial_colours(list(trials["trial_id"]))
    fig, ax = plt.subplots(figsize=(9, 5))
    stopped = set(trials.loc[trials["stopped_early"].astype(bool), "trial_id"])
    for trial_id, rows in history.groupby("trial_id"):
        rows = rows.sort_values("epoch")
        if metric not in rows:
            continue
        early = trial_id in stopped
        line, = ax.plot(rows["epoch"], rows[metric], linestyle="--" if early else "-", alpha=0.6 if early else 0.9,
                        linewidth=1 if early else 1.8, color=colours.get(trial_id))
        if early:
            ax.plot(rows["epoch"].iloc[-1], rows[metric].iloc[-1], "x", color=line.get_color())
    if "loss" in metric and metric in history:
        _loss_scale(ax, history[metric])
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} of every trial (dashed, x: stopped early by ASHA; {len(stopped)} of {len(trials)})")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def compute_curve(hours: np.ndarray, best: np.ndarray, reached_at: int, fifo_hours: float, metric: str, unit: str,
                  path: Path, price_per_hour: float = 0.0, budget_hours: float = 0.0) -> Path:
    """Best value so far against cumulative trial-hours; where the final best was first
    reached within 0.5 points; the hours FIFO would have spent on the same trials; with a
    price, the money along the top; with a budget, where it lies."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    ax.step(hours, best, where="post", color="tab:blue", label=f"best {metric} so far")
    ax.plot(hours[reached_at], best[reached_at], "o", color="tab:green",
            label=f"within 0.5 points of the final best, after {hours[reached_at]:.3g} {unit}")
    ax.axvline(hours[-1], color="tab:blue", linestyle=":", alpha=0.7, label=f"spent: {hours[-1]:.3g}")
    if fifo_hours > hours[-1]:
        ax.axvline(fifo_hours, color="tab:red", linestyle="--", alpha=0.7,
                   label=f"every trial to the end: {fifo_hours:.3g}")
    if budget_hours:
        ax.axvline(budget_hours, color="black", linestyle="-.", alpha=0.7, label=f"budget: {budget_hours:.3g}")
    if price_per_hour:
        def to_usd(h: Any) -> Any:
            return np.asarray(h) * price_per_hour

        def to_hours(usd: Any) -> Any:
            return np.asarray(usd) / price_per_hour

        top = ax.secondary_xaxis("top", functions=(to_usd, to_hours))
        top.set_xlabel(f"USD at ${price_per_hour:.3g} per {unit[:-1]}")
    ax.set_xlabel(unit)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right" if best[-1] >= best[0] else "upper right")
    return _save(fig, path)


def metric_vs_params(trials: pd.DataFrame, metric: str, search: dict, path: Path) -> Path:
    """One panel per searched parameter: the trial's best metric against its value."""
    keys = list(search)
    cols = min(3, max(1, len(keys)))
    rows = max(1, math.ceil(len(keys) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    colours = np.where(trials["stopped_early"].astype(bool), "tab:orange", "tab:blue")
    for ax, key in zip(axes.flat, keys):
        kind = next(iter(search[key]))
        values = trials[key]
        if kind == "choice":
            labels = [str(v) for v in search[key][kind]]
            positions = values.astype(str).map({label: i for i, label in enumerate(labels)})
            jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(values))
            ax.scatter(positions + jitter, trials[metric], c=colours, s=22)
            ax.set_xticks(range(len(labels)), labels)
        else:
            ax.scatter(values.astype(float), trials[metric], c=colours, s=22)
            if kind == "loguniform":
                ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"{metric} against each parameter (orange: stopped early)")
    return _save(fig, path)


def importances(values: dict[str, float], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(values)))
    names = list(values)[::-1]
    ax.barh(names, [values[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (fANOVA, Optuna)")
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def confusion(matrix: np.ndarray, classes: list[str], path: Path) -> Path:
    n = len(classes)
    size = min(14, 3 + 0.35 * n)
    fig, ax = plt.subplots(figsize=(size, size))
    normalised = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    if n <= 20:
        ax.set_xticks(range(n), classes, rotation=90)
        ax.set_yticks(range(n), classes)
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=8,
                            color="white" if normalised[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)


def class_distribution(counts: pd.DataFrame, path: Path) -> Path:
    """Images per class in each split (project 000's class-imbalance plot)."""
    n = len(counts)
    fig, ax = plt.subplots(figsize=(min(18, 4 + 0.16 * n * 2), 4))
    bottom = np.zeros(n)
    for split in counts.columns:
        ax.bar(range(n), counts[split], bottom=bottom, label=split)
        bottom += counts[split].to_numpy()
    if n <= 30:
        ax.set_xticks(range(n), counts.index, rotation=90)
    ax.set_xlabel("class")
    ax.set_ylabel("images")
    ax.legend()
    return _save(fig, path)


def image_grid(images: np.ndarray, titles: list[str], path: Path, cols: int = 5) -> Path:
    """images: [N, H, W, 3] floats in [0, 1]."""
    n = max(1, len(images))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        ax.imshow(image)
        ax.set_title(title, fontsize=8)
    return _save(fig, path)


def cam_rows(rows: list[list[tuple[np.ndarray, str]]], path: Path) -> Path:
    """A grid whose row r shows the pictures of rows[r] (image, title) side by side."""
    cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.3 * cols, 2.4 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, row in enumerate(rows):
        for c, (image, title) in enumerate(row):
            axes[r, c].imshow(image)
            axes[r, c].set_title(title, fontsize=8)
    return _save(fig, path)


def pareto(points: pd.DataFrame, front: pd.DataFrame, x: str, y: str, path: Path) -> Path:
    """Every trial a dot at (x, y), the Pareto front's trials joined and labelled (hollow: stopped early)."""
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(points[x], points[y], s=22, color="0.6", label="trial")
    line = front.sort_values(x)
    ax.plot(line[x], line[y], marker="o", color="tab:red", label="Pareto front")
    early = line[line["stopped_early"].astype(bool)] if "stopped_early" in line else line.iloc[:0]
    if not early.empty:  # hollow: what it reached before ASHA stopped it
        ax.scatter(early[x], early[y], s=60, facecolors="white", edgecolors="tab:red", zorder=3,
                   label="on the front, stopped early")
    for _, row in line.iterrows():
        ax.annotate(str(row["trial_id"]), (row[x], row[y]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(BY_NAME[x].label if x in BY_NAME else x)
    ax.set_ylabel(BY_NAME[y].label if y in BY_NAME else y)
    if (points[x] > 0).all() and points[x].max() / max(points[x].min(), 1e-12) > 20:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def population(history: pd.DataFrame, trial_ids: list[str], lineages: dict[str, list[tuple[int, int, str]]],
               best: str, path: Path, colours: dict[str, tuple] | None = None) -> Path:
    """Population-based training: every member's learning rate over the epochs of its lineage
    (left), and every member's lineage (right): along whose row each stretch of epochs of its
    weights was trained (`lineages`: member -> (first, last, trial) stretches), an arrow where it
    took another's weights; the best member's in black."""
    colours = colours or trial_colours(trial_ids)
    fig, (lr_ax, tree) = plt.subplots(1, 2, figsize=(12, 4.2))
    for trial_id in trial_ids:
        rows = history[history["trial_id"] == trial_id].sort_values("epoch")
        lr_ax.step(rows["epoch"], rows["epoch_lr"], where="post", marker=".", label=trial_id,
                   color=colours.get(trial_id))
    lr_ax.set_yscale("log")
    lr_ax.set_xlabel("epoch")
    lr_ax.set_title("learning rate of every member")
    lr_ax.grid(alpha=0.3)
    lr_ax.legend(fontsize=8)
    place = {trial_id: i for i, trial_id in enumerate(trial_ids)}
    for trial_id in trial_ids:
        tree.axhline(place[trial_id], color=colours.get(trial_id), alpha=0.2, lw=6)
    for member in sorted(lineages, key=lambda m: m == best):  # the best drawn last, on top
        is_best = member == best
        colour, width = ("black", 2.5) if is_best else (colours.get(member), 1.2)
        offset = 0.0 if is_best else 0.12 * (place.get(member, 0) % 3 - 1)  # lineages that share a row stay apart
        previous = None
        for first, last, trial_id in lineages[member]:
            y = place.get(trial_id, len(place)) + offset
            tree.plot([first - 0.5, last + 0.5], [y, y], color=colour, lw=width)
            if previous is not None:
                tree.annotate("", xy=(first - 0.5, y), xytext=(first - 0.5, previous),
                              arrowprops={"arrowstyle": "->", "lw": width * 0.6, "color": colour})
            previous = y
    tree.set_yticks(range(len(trial_ids)), trial_ids, fontsize=8)
    tree.set_xlabel("epoch")
    tree.set_title("lineages: whose row trained which epochs (the best in black)")
    tree.grid(alpha=0.3, axis="x")
    return _save(fig, path)
