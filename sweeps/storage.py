"""Run folders on a local disk or behind a URI (s3://, gs://, ... through pyarrow's filesystems,
which Ray Tune itself uses for `storage_path`)."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

from trainer.checkpoint import atomic_write_bytes


def is_uri(path: str) -> bool:
    return "://" in str(path)


def join(base: str, *parts: str) -> str:
    if is_uri(base):
        return "/".join([base.rstrip("/"), *parts])
    return str(Path(base, *parts))


def absolute(path: str) -> str:
    return path if is_uri(path) else str(Path(path).expanduser().resolve())


def _fs(uri: str):
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(uri)


def read_text(path: str) -> str:
    if not is_uri(path):
        return Path(path).read_text()
    fs, inner = _fs(path)
    with fs.open_input_stream(inner) as f:
        return f.read().decode()


def write_text(path: str, text: str) -> None:
    """Atomic on a local disk (temp file + rename); object stores write whole objects anyway."""
    if is_uri(path):
        fs, inner = _fs(path)
        with fs.open_output_stream(inner) as f:
            f.write(text.encode())
        return
    atomic_write_bytes(Path(path), lambda f: f.write(text.encode()))


def exists(path: str) -> bool:
    if not is_uri(path):
        return Path(path).exists()
    import pyarrow.fs

    fs, inner = _fs(path)
    return fs.get_file_info(inner).type != pyarrow.fs.FileType.NotFound


def check_writable(folder: str, need_bytes: int | None = None) -> str | None:
    """None when `folder` can take results, else a one-line reason. The free space needed is
    $RESWEEP_MIN_FREE_MB (default 200 MiB: a few checkpoints of a ResNet50)."""
    if need_bytes is None:
        need_bytes = int(float(os.environ.get("RESWEEP_MIN_FREE_MB", "200")) * 2**20)
    if is_uri(folder):
        try:
            probe = join(folder, f".resweep-probe-{uuid.uuid4().hex}")
            write_text(probe, "ok")
            fs, inner = _fs(probe)
            fs.delete_file(inner)
        except Exception as err:  # credentials, bucket missing, no network
            return (f"cannot write to {folder} ({type(err).__name__}: {str(err).splitlines()[0][:100]}); check the "
                    f"bucket and its credentials, or pass --storage with a writable folder")
        return None
    target = Path(folder)
    try:
        target.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".resweep-probe-", dir=target)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        return f"cannot write to {folder} ({err.strerror or err}); pass --storage with a writable folder"
    free = os.statvfs(target).f_bavail * os.statvfs(target).f_frsize
    if free < need_bytes:
        return (f"only {free / 2**20:.0f} MiB free at {folder}, {need_bytes / 2**20:.0f} MiB needed; free some space "
                f"or pass --storage elsewhere")
    return None
