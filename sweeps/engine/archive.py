"""Ray Tune's state of a sweep, stored whole, so that `sweep resume` after a crashed driver
starts from a state that hangs together.

Tune snapshots a sweep into a few files (the trials, the searcher, its counter) and copies
them to the run folder one by one; a driver killed during a copy leaves them from two
moments. Seen on S3: a searcher that counted a trial the trial list lacked (the resumed
sweep ended a trial short, and `sweep resume` read that as an interruption), and a
checkpoint named by the old trial list but already deleted. So after every snapshot Tune
takes, the driver also writes its files as one archive, `tune-state.tar` in the run
folder: one object put on S3 (one rename on a disk) is stored whole or not at all. A
resume puts the archive's files back first.

Tune copies the trials' result files to the run folder with its snapshots, in the background and
at most every TUNE_GLOBAL_CHECKPOINT_S seconds, while the archive is also written as soon as a
trial is added, which is the moment another one ended: an archive could say a trial finished
while the run folder held its result file as of seconds before (seen: a driver killed there,
and the resumed sweep's finished trial lacked its last epochs for good, since a finished trial
never runs again). So the result file of a trial that ended in this driver is stored before any
archive that says it ended.

Tune snapshots every TUNE_GLOBAL_CHECKPOINT_S seconds (set in `sweeps.engine.driver`); a trial
created in between, and lost with the driver, would be sampled anew on resume. So a
snapshot is also taken, and archived, as soon as a trial is added, before it can start,
unless the last one is very recent: the state grows with the trials (about 20 kB each), so
a snapshot per new trial would cost O(trials^2) in a sweep of a thousand short trials.
A new trial is snapshotted unless less than SNAPSHOT_SPACING times the last snapshot's
own duration has passed since it (at most 1/SNAPSHOT_SPACING of the driver's time). The
window left open is that short: milliseconds in a small sweep, a few seconds at a thousand
trials, below any real trial's first epoch (a trial that kept no checkpoint is removed on
resume and its place sampled anew, losing nothing).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path

from ray.tune import Callback
from ray.tune.experiment import Trial

from sweeps.runfolder.layout import (
    CHECKPOINT_DIR,
    RESULT_FILE,
    STATE_FILE,
    is_state_file,
    is_trial_folder,
    state_archive,
    state_file,
    trial_folder,
    trial_folder_name,
)
from sweeps.runfolder.storage import (
    StoreError,
    delete,
    filesystem,
    gone_too_long,
    is_uri,
    join,
    list_folder,
    note_failure,
    note_success,
    read_text_or_none,
    store_wait_s,
    upload_file,
    write_bytes,
)

SNAPSHOT_SPACING = 20  # a forced snapshot waits at least this many times the last one's duration
# Tune's path of a run inside its filesystem -> the run's path or URI, for the runs this driver drives
RUN_PATHS: dict[str, str] = {}
# trial id -> the size of the result file this driver stored for it once it ended
_ENDED_STORED: dict[str, int] = {}


def drive(run_path: str) -> None:
    """Note that this process drives the run at `run_path` (where its archive goes)."""
    inner = filesystem(run_path)[1]
    RUN_PATHS[inner.rstrip("/")] = run_path


def _staging_files(trials) -> tuple[list[Path], str] | None:
    """Tune's state files as the driver just wrote them, and the run folder (path or URI) they go to."""
    if not trials:
        return None
    storage = trials[0].storage
    staging = Path(storage.experiment_driver_staging_path)
    if not staging.is_dir():
        return None
    # by name first: the folder also holds a folder per trial, and this runs at every step
    with os.scandir(staging) as entries:
        files = sorted(staging / e.name for e in entries if STATE_FILE.match(e.name) and e.is_file())
    # the run as resweep names it (a URI keeps its query: Tune's storage context knows only its filesystem)
    fs_path = storage.experiment_fs_path
    return files, RUN_PATHS.get(fs_path.rstrip("/"), fs_path)


def write_archive(trials, wait: float = 0) -> bool:
    """Write the driver's current Tune state files as one archive in the run folder: renamed
    into place on a disk, one object put behind a URI. A store that is away is tried for `wait`
    seconds (by default once: the next snapshot tries again), and a StoreError is raised only
    once it has been away for longer than store_wait_s(): the driver's loop never waits on the store."""
    found = _staging_files(trials)
    if not found or not found[0]:
        return False
    files, run_path = found
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in files:
            tar.add(path, arcname=path.name, recursive=False)
    target = state_archive(run_path)
    try:
        _store_ended_results(trials, run_path, wait)
        write_bytes(target, buffer.getvalue(), wait=wait)
        note_success(target)
    except StoreError as err:
        if not err.transient:
            raise
        waited = time.time() - note_failure(target)
        if waited >= store_wait_s():
            raise gone_too_long(target, err, waited, run=run_path) from None
        return False  # the next snapshot tries again
    return True


def _store_ended_results(trials, run_path: str, wait: float) -> None:
    """Store the result file of every trial that ended in this driver (as the driver wrote it
    to its staging folder) where the run folder may hold less: before the state says it ended."""
    for trial in trials:
        if trial.status not in (Trial.TERMINATED, Trial.ERROR) or not trial.relative_logdir:
            continue
        try:  # a trial restored as ended has no file here: this driver logged nothing for it
            data = Path(trial.local_path, RESULT_FILE).read_bytes()
        except OSError:
            continue
        if _ENDED_STORED.get(trial.trial_id) != len(data):
            write_bytes(join(trial_folder(run_path, trial.relative_logdir), RESULT_FILE), data, wait=wait)
            _ENDED_STORED[trial.trial_id] = len(data)


def _read_archive(run_path: str) -> dict[str, bytes]:
    """The state files in the run's archive, by name (empty: no archive)."""
    fs, inner = filesystem(state_archive(run_path))
    try:
        with fs.open_input_stream(inner) as f:
            data = f.read()
    except (FileNotFoundError, OSError):
        return {}
    members: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for member in tar.getmembers():
            if member.isfile() and STATE_FILE.match(member.name):  # plain names only: nothing lands elsewhere
                extracted = tar.extractfile(member)
                if extracted is not None:
                    members[member.name] = extracted.read()
    return members if any(is_state_file(name) for name in members) else {}


def _trial_folders(members: dict[str, bytes]) -> set[str]:
    """The folder names of the trials in the archived state."""
    state = json.loads(members[max(n for n in members if is_state_file(n))])
    trials = [json.loads(entry[0]) for entry in state.get("trial_data", [])]
    return {t.get("relative_logdir") or trial_folder_name(t["trial_id"]) for t in trials}


def restore_archive(run_path: str) -> set[str] | None:
    """Put the archived Tune state back into the run folder, replacing the state files Tune
    copied there one by one; returns the folder names of the trials it holds (None: no archive)."""
    members = _read_archive(run_path)
    if not members:
        return None
    for name, is_dir in list_folder(run_path):
        if not is_dir and STATE_FILE.match(name) and name not in members and name != "tuner.pkl":
            delete(state_file(run_path, name))  # a later session's files, copied in part
    for name, content in members.items():
        write_bytes(state_file(run_path, name), content)
    return _trial_folders(members)


def remove_orphans(run_path: str, known: set[str]) -> list[str]:
    """Delete the folders of trials the restored state does not know and that kept no
    checkpoint: trials created after the state was stored, which did no lasting work (the
    resumed sweep samples their place anew). Returns the folders removed."""
    removed = []
    for name, worked in unknown_trial_folders(run_path, known).items():
        if worked:
            continue  # work was kept: never deleted, and the readers leave the folder out
        delete(trial_folder(run_path, name), folder=True)
        removed.append(name)
    return removed


def unknown_trial_folders(run_path: str, known: set[str]) -> dict[str, bool]:
    """The trial folders not in `known`, each with whether it kept a checkpoint."""
    return {name: any(CHECKPOINT_DIR.match(n) for n, _ in list_folder(trial_folder(run_path, name)))
            for name, is_dir in sorted(list_folder(run_path))
            if is_dir and is_trial_folder(name) and name not in known}


def kept_aside(run_path: str, known: set[str]) -> list[str]:
    """The trial folders the state does not know that kept a checkpoint: trials that started
    after the last saved state and checkpointed before the driver was lost. The readers
    leave them out (the resumed sweep sampled their places anew); they are kept as they are."""
    return [name for name, worked in unknown_trial_folders(run_path, known).items() if worked]


class ArchiveState(Callback):
    """After each step in which Tune wrote a snapshot, archive it; and once more at the end."""

    def __init__(self):
        self._seen: float | None = None

    def _maybe_archive(self, trials, force: bool = False) -> None:
        found = _staging_files(trials)
        if not found:
            return
        stamp = max((p.stat().st_mtime_ns for p in found[0] if is_state_file(p.name)), default=None)
        if stamp is not None and (force or stamp != self._seen):
            self._seen = stamp
            write_archive(trials)

    def on_step_end(self, iteration, trials, **info):
        self._maybe_archive(trials)

    def on_experiment_end(self, trials, **info):
        """The sweep's last state is in the run folder before the driver summarizes and ends:
        where the store was away at Tune's final copy, it is waited for (the store window) and
        the driver's files are copied again."""
        found = _staging_files(trials)
        if found and found[0]:
            files, run_path = found
            newest = max((p for p in files if is_state_file(p.name)), key=lambda p: p.name, default=None)
            if newest is not None and read_text_or_none(state_file(run_path, newest.name)) != newest.read_text():
                copy_staging(Path(trials[0].storage.experiment_driver_staging_path), run_path)
            write_archive(trials, wait=store_wait_s())


def copy_staging(staging: Path, run_path: str) -> int:
    """Copy every file of the driver's staging folder (Tune's state, each trial's result files)
    to the run folder, waiting for a store that is away; returns how many."""
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    for path in files:
        target = join(run_path, *path.relative_to(staging).parts)
        if is_uri(run_path):
            upload_file(path, target)
        else:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            Path(target).write_bytes(path.read_bytes())
    return len(files)


