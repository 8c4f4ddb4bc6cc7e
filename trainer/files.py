"""Writing a file whole or not at all: the one atomic writer of checkpoints, the data cache
and a run folder's files on a local disk. Standard library only, so that code writing run
folders does not import torch for it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write_bytes(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call `write(f)` on a temporary file in the same folder, then rename it over `path`:
    a reader sees the old file or the new one, never a part (a crash leaves no temporary)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
