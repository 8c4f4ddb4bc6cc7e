"""Where the analysis commands write: never among a run's own files, and each folder written
whole (a report or an export that fails half-way leaves the one before it as it was)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sweeps.runfolder.layout import REPORT_DIR, enclosing_run


class OutputError(RuntimeError):
    """An output path that would overwrite a run's files or is of the wrong kind; one line."""


def check_output_folder(folder: Path, option: str) -> None:
    """Refuse an output folder that is a file, or that would put files among a run's own (a run
    folder, a trial's folder): only a run's report folder, or a folder outside runs, is written."""
    folder = Path(folder).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{option} {folder} is a file; give a folder (it is created if missing)")
    inside_run(folder, option)


def check_output_file(file: Path, option: str) -> None:
    """Refuse an output file that is a folder, or that would be among a run's own files."""
    file = Path(file).expanduser().resolve()
    if file.is_dir():
        raise OutputError(f"{option} {file} is a folder; give a file name")
    inside_run(file, option)


def inside_run(path: Path, option: str) -> None:
    """Refuse a path inside a run folder (but for the run's report folder), or under a file."""
    existing = next(p for p in [path, *path.parents] if p.exists())
    if existing != path and not existing.is_dir():
        raise OutputError(f"{option} {path}: {existing} is a file, not a folder")
    run = enclosing_run(path)
    if run is not None:
        raise OutputError(f"{option} {path} is inside the run folder {run}, among its own files; give "
                          f"{run / REPORT_DIR} or a folder outside the run")


@contextmanager
def replaced_folder(target: Path) -> Iterator[Path]:
    """A new, empty folder beside `target` to write into; on success it replaces `target` whole
    (the old one is removed only after the new one is in place); on failure it is removed and
    `target` stays as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        yield work
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / target.name)
    os.replace(work, target)
    os.chmod(target, 0o755)  # mkdtemp's 0700 would hide the report from the folder's other readers
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
