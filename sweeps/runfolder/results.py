"""A trial's result file: a JSON line per epoch (the names of trainer.metrics), then its
failure report if it ended with one."""

from __future__ import annotations

import json
import logging
from typing import Any

from sweeps.runfolder.layout import CHECKPOINT_KEY, result_file
from sweeps.runfolder.storage import read_text_or_none
from trainer.metrics import current_names


def read_results(trial_path: str, keep_repeats: bool = False) -> list[dict[str, Any]]:
    """The per-epoch results of a trial, by epoch, then its failure report if it ended with one.

    An epoch reported twice counts once: a trial that restarts (a retry, a resumed sweep)
    first reports again the epochs its checkpoint holds (`replayed`), which never replace a
    first report; an epoch trained again replaces the earlier one. `keep_repeats`: every
    line as written."""
    path = result_file(trial_path)
    return parse_results(read_text_or_none(path) or "", keep_repeats, source=path)

def parse_results(text: str, keep_repeats: bool = False, source: str | None = None) -> list[dict[str, Any]]:
    """`read_results` of a result file's text (older metric names read as today's). A last line
    without its newline is still being written and is left for later; a whole line that does not
    parse is damaged, skipped, and said once on stderr when the file is named by `source`."""
    rows, damaged = [], 0
    lines = text.splitlines()
    for i, line in enumerate(lines):
        try:
            row = current_names(json.loads(line))
            if not isinstance(row, dict):
                raise ValueError(line)
            rows.append(row)
        except (ValueError, AttributeError, TypeError):
            finished = i < len(lines) - 1 or text.endswith("\n")
            damaged += bool(finished and line.strip())
    if damaged and source:
        logging.getLogger("resweep").warning(f"{source}: {damaged} damaged line(s) skipped; the trial's other "
                                             f"epochs are read")
    return rows if keep_repeats else one_per_epoch(rows)


def inherited_through(row: dict[str, Any]) -> int:
    """The epoch up to which a row's weights are another trial's (population-based training:
    the last entry of its `lineage`, "EPOCH:TRIAL;..."); 0 where they are its trial's own."""
    lineage = str(row.get("lineage") or "")
    return int(lineage.rsplit(";", 1)[-1].split(":", 1)[0]) if lineage else 0


def one_per_epoch(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A result file's rows as written (`keep_repeats`), one per epoch as `read_results` gives them.
    A row of a new lineage (population-based training: the trial took another's weights, and
    replays their history) starts the trial's epochs anew: the rows of the weights it dropped go."""
    by_epoch: dict[int, dict[str, Any]] = {}
    lineage = ""
    for i, row in enumerate(rows):
        if row.get("failure"):
            continue
        epoch = int(row.get("epoch", row.get("training_iteration", i + 1)))
        if str(row.get("lineage") or "") != lineage:
            lineage = str(row.get("lineage") or "")
            by_epoch = {e: r for e, r in by_epoch.items() if str(r.get("lineage") or "") == lineage}
        if epoch not in by_epoch or not row.get("replayed") or by_epoch[epoch].get("replayed"):
            by_epoch[epoch] = row
    ending = [rows[-1]] if rows and rows[-1].get("failure") else []
    return [by_epoch[k] for k in sorted(by_epoch)] + ending

def trained_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a result file (as written) that each stand for an epoch trained: every row a
    trial trained (an epoch trained twice, after a crash, was paid for twice), and for an epoch
    the file holds only as replayed, its first replay. A resumed sweep's new driver writes a
    trial's result file anew (Tune restores it only for trials with Tune checkpoints), so the
    rows an earlier driver wrote are gone; the trial's replay of its stored epochs carries each
    one's own measured time."""
    trained = {int(r.get("epoch", 0)) for r in rows if not r.get("replayed") and not r.get("failure")}
    kept, stood_in = [], set()
    for row in rows:
        if row.get("failure"):
            continue
        epoch = int(row.get("epoch", 0))
        if not row.get("replayed"):
            kept.append(row)
        elif epoch <= inherited_through(row):
            continue  # another trial trained it (population-based training): paid for there
        elif epoch not in trained and epoch not in stood_in:
            kept.append(row)
            stood_in.add(epoch)
    return kept


def checkpoint_of(row: dict[str, Any]) -> str | None:
    """The checkpoint folder of a result row (`checkpoint_dir_name`: runs from before trials
    kept their own checkpoints)."""
    return row.get(CHECKPOINT_KEY) or row.get("checkpoint_dir_name")
