"""Run folders on a local disk or behind a URI (s3://, gs://, ... through pyarrow's filesystems,
which Ray Tune itself uses for `storage_path`).

A URI may carry its filesystem's options as a query, which stays at the end when paths are
joined, as Ray Tune does: `s3://bucket/runs?endpoint_override=127.0.0.1:9000&scheme=http`
joined with `c1` is `s3://bucket/runs/c1?endpoint_override=127.0.0.1:9000&scheme=http`. That
is how an S3-compatible store that is not AWS (MinIO, Ceph, R2) is named once for every
command and every node of a cluster.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from trainer.files import atomic_write_bytes


def is_uri(path: str) -> bool:
    return "://" in str(path)


def join(base: str, *parts: str) -> str:
    if not is_uri(base):
        return str(Path(base, *parts))
    scheme, netloc, path, query, fragment = urlsplit(base)
    path = "/".join([path.rstrip("/"), *parts]) if path.strip("/") else "/" + "/".join(parts)
    return urlunsplit((scheme, netloc, path, query, fragment))


def split_name(path: str) -> tuple[str, str]:
    """(parent, last component) of a folder or URI; a URI's query stays with the parent."""
    if not is_uri(path):
        folder = Path(path)
        return str(folder.parent), folder.name
    scheme, netloc, inner, query, fragment = urlsplit(path)
    parent, _, name = inner.rstrip("/").rpartition("/")
    if not name:  # s3://bucket: the bucket is the name
        return urlunsplit((scheme, "", "", query, fragment)), netloc
    return urlunsplit((scheme, netloc, parent, query, fragment)), name


def absolute(path: str) -> str:
    """A local path made absolute; a URI without a trailing '/' in its path."""
    if not is_uri(path):
        return str(Path(path).expanduser().resolve())
    scheme, netloc, inner, query, fragment = urlsplit(path)
    return urlunsplit((scheme, netloc, inner.rstrip("/"), query, fragment))


def filesystem(path: str):
    """(pyarrow filesystem, path inside it) of a local folder or a URI."""
    import pyarrow.fs

    if is_uri(path):
        return pyarrow.fs.FileSystem.from_uri(path)
    return pyarrow.fs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))


def read_text(path: str) -> str:
    if not is_uri(path):
        return Path(path).read_text()
    fs, inner = filesystem(path)
    with fs.open_input_stream(inner) as f:
        return f.read().decode()


def read_text_or_none(path: str) -> str | None:
    """The file's text, or None where it is missing or unreadable (being written, say)."""
    fs, inner = filesystem(path)
    try:
        with fs.open_input_stream(inner) as f:
            return f.read().decode(errors="replace")
    except (FileNotFoundError, OSError):
        return None


def list_folder(path: str) -> list[tuple[str, bool]]:
    """(name, is_dir) of the entries of a folder; empty where it does not exist."""
    import pyarrow.fs

    fs, inner = filesystem(path)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(inner, allow_not_found=True))
    return [(i.base_name, i.type == pyarrow.fs.FileType.Directory) for i in infos]


def write_text(path: str, text: str) -> None:
    """Atomic on a local disk (temp file + rename); object stores write whole objects anyway."""
    write_bytes(path, text.encode())


def write_bytes(path: str, data: bytes) -> None:
    if is_uri(path):
        fs, inner = filesystem(path)
        with fs.open_output_stream(inner) as f:
            f.write(data)
        return
    atomic_write_bytes(Path(path), lambda f: f.write(data))


def exists(path: str) -> bool:
    if not is_uri(path):
        return Path(path).exists()
    import pyarrow.fs

    fs, inner = filesystem(path)
    return fs.get_file_info(inner).type != pyarrow.fs.FileType.NotFound


@contextmanager
def local_folder(path: str) -> Iterator[Path]:
    """A folder of the local disk holding what `path` holds: `path` itself, or for a URI a
    temporary copy removed afterwards (a checkpoint to load, say)."""
    if not is_uri(path):
        yield Path(path)
        return
    import pyarrow.fs

    fs, inner = filesystem(path)
    if fs.get_file_info(inner).type != pyarrow.fs.FileType.Directory:
        raise FileNotFoundError(f"{path}: no such folder")
    folder = Path(tempfile.mkdtemp(prefix="resweep-"))
    try:
        pyarrow.fs.copy_files(inner, str(folder), source_filesystem=fs,
                              destination_filesystem=pyarrow.fs.LocalFileSystem())
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def check_writable(folder: str, need_bytes: int | None = None) -> str | None:
    """None when `folder` can take results, else a one-line reason. The free space needed is
    $RESWEEP_MIN_FREE_MB (default 200 MiB: a few checkpoints of a ResNet50)."""
    if need_bytes is None:
        need_bytes = int(float(os.environ.get("RESWEEP_MIN_FREE_MB", "200")) * 2**20)
    if is_uri(folder):
        try:
            probe = join(folder, f".resweep-probe-{uuid.uuid4().hex}")
            write_text(probe, "ok")
            fs, inner = filesystem(probe)
            fs.delete_file(inner)
        except Exception as err:  # credentials, bucket missing, no network, a bad endpoint
            return (f"cannot write to {folder} ({type(err).__name__}: {str(err).splitlines()[0][:100]}); check the "
                    f"bucket, its credentials and endpoint (see README, 'S3-compatible stores'), or pass --storage "
                    f"with a writable folder")
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
