"""Run folders on a local disk or behind a URI (s3://, gs://, ... through pyarrow's filesystems,
which Ray Tune itself uses for `storage_path`).

A URI may carry its filesystem's options as a query, which stays at the end when paths are
joined, as Ray Tune does: `s3://bucket/runs?endpoint_override=127.0.0.1:9000&scheme=http`
joined with `c1` is `s3://bucket/runs/c1?endpoint_override=127.0.0.1:9000&scheme=http`. That
is how an S3-compatible store that is not AWS (MinIO, Ceph, R2) is named once for every
command and every node of a cluster.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import shlex
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from trainer.files import atomic_write_bytes

T = TypeVar("T")

# Every request to a store gets an answer or an error in seconds: pyarrow's defaults (and the
# bucket-region lookup of a URI without a region) let a wrong endpoint or a missing network
# hang a command for minutes.
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 10.0  # seconds without a byte (curl's low-speed limit), not a whole upload's time
# The wall-clock limit of a command's first contact with a store (the probe before a sweep, the
# region lookup, the plan's first read): where nothing answers then, the address is wrong.
def check_timeout_s() -> float:
    """$RESWEEP_STORE_CHECK_S, default 10 s."""
    try:
        return max(0.5, float(os.environ.get("RESWEEP_STORE_CHECK_S", "10")))
    except ValueError:
        return 10.0
# Schemes pyarrow's filesystems know; a bucket (or host) is needed for all but file://.
SCHEMES = {"s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "file"}
# The query options of an s3:// URI (pyarrow's FileSystem.from_uri takes the same).
S3_OPTIONS = {"region", "scheme", "endpoint_override", "allow_bucket_creation", "allow_bucket_deletion",
              "tls_ca_file_path", "force_virtual_addressing"}


class StoreError(RuntimeError):
    """The store behind a URI is wrong or cannot be reached; one line naming it and the fix.
    `transient`: it was away (a refused or dropped connection, a time-out, 5xx), not wrong."""

    transient = False
    run: str | None = None  # the run a `sweep resume` continues, where the message names one


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


def check_uri(path: str) -> None:
    """Raise a one-line StoreError where `path` is a URI pyarrow cannot name a folder with."""
    if not is_uri(path):
        return
    parts = urlsplit(path)
    if parts.scheme not in SCHEMES:
        raise StoreError(f"{path}: unknown scheme {parts.scheme + '://'!r}; use s3://BUCKET/PREFIX, gs://BUCKET/PREFIX "
                         f"or a local folder")
    if parts.scheme != "file" and not parts.netloc:
        raise StoreError(f"{path}: no bucket named; give {parts.scheme}://BUCKET/PREFIX")
    if parts.scheme == "s3":
        unknown = sorted({k for k, _ in parse_qsl(parts.query, keep_blank_values=True)} - S3_OPTIONS)
        if unknown:
            raise StoreError(f"{path}: unknown option {unknown[0]!r} in the URI's query; it takes "
                             f"{', '.join(sorted(S3_OPTIONS))}")


def store_host(path: str) -> str:
    """Who answers for `path`, for messages: the S3 endpoint (the URI's, $AWS_ENDPOINT_URL) or the bucket."""
    parts = urlsplit(path)
    options = dict(parse_qsl(parts.query))
    endpoint = options.get("endpoint_override") or os.environ.get("AWS_ENDPOINT_URL_S3") \
        or os.environ.get("AWS_ENDPOINT_URL")
    if parts.scheme == "s3" and endpoint:
        return endpoint
    return f"{parts.scheme}://{parts.netloc}"


def with_time_limit(call: Callable[[], T], seconds: float, path: str) -> T:
    """`call()`'s result, or a StoreError naming `path`'s store after `seconds`: a call into a
    store's client library cannot be interrupted, so it runs in a daemon thread that is left
    behind on a timeout."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as err:  # handed to the caller's thread
            box["error"] = err

    worker = threading.Thread(target=target, daemon=True, name="resweep-store-check")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise store_error(OSError(f"no answer within {seconds:g} s"), path)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


@functools.lru_cache(maxsize=32)
def _s3_filesystem(bucket: str, query: str, env: tuple[str | None, ...]):
    """An S3 filesystem for `bucket` with the URI's options, bounded timeouts, and the region
    from the URI, the environment, or looked up (in at most check_timeout_s(): pyarrow's own
    lookup retries for minutes without a network)."""
    import pyarrow.fs

    options = dict(parse_qsl(query))
    endpoint = options.pop("endpoint_override", None)
    if endpoint is None and env[2]:  # $AWS_ENDPOINT_URL(_S3): a URL, its scheme included
        url = urlsplit(env[2] if "://" in env[2] else f"https://{env[2]}")
        endpoint = url.netloc
        options.setdefault("scheme", url.scheme)
    region = options.pop("region", None) or env[0] or env[1]
    if region is None and not endpoint:
        try:
            region = with_time_limit(lambda: pyarrow.fs.resolve_s3_region(bucket), check_timeout_s(), f"s3://{bucket}")
        except (StoreError, OSError) as err:
            if isinstance(err, OSError) and not is_transient(err):
                raise
            text = str(err)
            detail = f"no answer within {check_timeout_s():g} s" if "no answer within" in text else \
                text.split("Details: ")[-1].strip()[:80]
            lost = StoreError(f"s3://{bucket}: the bucket's region could not be looked up ({detail}); check the "
                              f"network and the credentials, or name the region: ?region=REGION in the URI, or "
                              f"$AWS_REGION")
            lost.transient = True
            raise lost from None
    flags = {k: options.pop(k).lower() in ("1", "true", "yes") for k in
             ("allow_bucket_creation", "allow_bucket_deletion", "force_virtual_addressing") if k in options}
    return pyarrow.fs.S3FileSystem(region=region or "us-east-1", endpoint_override=endpoint,
                                   scheme=options.pop("scheme", "https"), connect_timeout=CONNECT_TIMEOUT_S,
                                   request_timeout=REQUEST_TIMEOUT_S, **flags, **options)


def filesystem(path: str):
    """(pyarrow filesystem, path inside it) of a local folder or a URI."""
    import pyarrow
    import pyarrow.fs

    if not is_uri(path):
        return pyarrow.fs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))
    check_uri(path)
    parts = urlsplit(path)
    try:
        if parts.scheme == "s3":
            env = (os.environ.get("AWS_REGION"), os.environ.get("AWS_DEFAULT_REGION"),
                   os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
            return _s3_filesystem(parts.netloc, parts.query, env), f"{parts.netloc}{parts.path}".rstrip("/")
        return pyarrow.fs.FileSystem.from_uri(path)
    except (pyarrow.ArrowInvalid, ValueError) as err:
        raise StoreError(f"{path}: {str(err).splitlines()[0][:160]}") from None
    except OSError as err:
        raise store_error(err, path) from None


def store_error(err: OSError, path: str) -> StoreError:
    """A pyarrow OSError of a store as one line: what is wrong and what to check."""
    text = str(err)
    where = f"the store at {store_host(path)} ({_plain_uri(path)})"
    if "NO_SUCH_BUCKET" in text or "NoSuchBucket" in text or "bucket does not exist" in text:
        bucket = urlsplit(path).netloc
        return StoreError(f"{where}: no bucket {bucket!r}; create it, or give a bucket that exists")
    if "ACCESS_DENIED" in text or "AccessDenied" in text or "Forbidden" in text or "HTTP response code: 403" in text:
        return StoreError(f"{where}: access denied; check the credentials (AWS_ACCESS_KEY_ID / AWS_PROFILE, the "
                          f"instance's role) and the bucket's policy")
    if any(code in text for code in ("INVALID_ACCESS_KEY_ID", "InvalidAccessKeyId", "SIGNATURE_DOES_NOT_MATCH",
                                     "SignatureDoesNotMatch", "No credentials", "NoCredentials")):
        return StoreError(f"{where}: the credentials were refused; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                          f"(or AWS_PROFILE)")
    if is_transient(err):
        detail = text.split("Details: ")[-1] if "Details: " in text else text.split(": ")[-1]
        endpoint = store_host(path) != f"s3://{urlsplit(path).netloc}" or urlsplit(path).scheme != "s3"
        check = ("the endpoint (?endpoint_override=HOST:PORT&scheme=http for MinIO and the like), the network, and "
                 "that the store is up") if endpoint else \
            "the network and the credentials, or name the bucket's region (?region=REGION or $AWS_REGION)"
        away = StoreError(f"{where} does not answer ({detail.strip()[:90]}); check {check}")
        away.transient = True
        return away
    return StoreError(f"{where}: {text.splitlines()[0][:160]}")


def _plain_uri(path: str) -> str:
    """The URI without its query, for messages."""
    parts = urlsplit(path)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


# What a store says while it is away for a while (refused or dropped connections, time-outs,
# 5xx, SlowDown): waited out. Anything else (no bucket, access denied) is said at once.
TRANSIENT = ("NETWORK_CONNECTION", "curlCode", "no answer within", "SlowDown", "SLOW_DOWN", "ServiceUnavailable",
             "SERVICE_UNAVAILABLE", "InternalError", "INTERNAL_FAILURE", "RequestTimeout", "REQUEST_TIMEOUT",
             "Throttl", "THROTTLING", "HTTP response code: 5", "Connection reset", "Broken pipe")
BACKOFF_S = (0.5, 30.0)  # the first wait between tries, and the longest (doubling, with jitter)
_outages: dict[str, float] = {}  # store host -> time.time() when it stopped answering (this process)
_outage_lock = threading.Lock()


def store_wait_s() -> float:
    """How long a store may be away before a command gives up: $RESWEEP_STORE_WAIT_S, default 10 minutes."""
    try:
        return max(0.0, float(os.environ.get("RESWEEP_STORE_WAIT_S", "600")))
    except ValueError:
        return 600.0


def is_transient(err: BaseException) -> bool:
    return any(mark in str(err) for mark in TRANSIENT)


def current_outage() -> tuple[str, float] | None:
    """(host, since) of the store that has been away longest in this process, if one is."""
    with _outage_lock:
        return min(_outages.items(), key=lambda item: item[1]) if _outages else None


def note_failure(path: str) -> float:
    """Mark `path`'s store as away (said once per outage on stderr); returns since when."""
    host = store_host(path)
    with _outage_lock:
        new = host not in _outages
        since = _outages.setdefault(host, time.time())
    if new:
        logging.getLogger("resweep").warning(
            f"the store at {host} does not answer since {time.strftime('%H:%M:%S', time.localtime(since))}; "
            f"waiting for it up to {store_wait_s():g} s ($RESWEEP_STORE_WAIT_S)")
    return since


def note_success(path: str) -> None:
    if not is_uri(path):
        return
    host = store_host(path)
    with _outage_lock:
        since = _outages.pop(host, None)
    if since is not None:
        logging.getLogger("resweep").warning(f"the store at {host} answers again after {time.time() - since:.0f} s")


def gone_too_long(path: str, err: BaseException, waited: float, run: str | None = None) -> StoreError:
    first = str(err) if isinstance(err, StoreError) else str(store_error(
        err if isinstance(err, OSError) else OSError(str(err)), path))
    resume = f", then continue with `sweep resume {shlex.quote(run)}`: nothing written before is lost" if run else ""
    gone = StoreError(f"{first.split('; check')[0]}, for {waited:.0f} s ($RESWEEP_STORE_WAIT_S is "
                      f"{store_wait_s():g}); check that the store is up and reachable from here{resume}")
    gone.run = run
    gone.transient = True
    return gone


def _store_call(path: str, call: Callable[[], T], wait: float | None = None) -> T:
    """`call()`, with a store's errors (other than a missing file) as one-line StoreErrors. A
    transient error is retried with exponential backoff and jitter while the store has been
    away for less than `wait` seconds (store_wait_s() by default; 0: not at all)."""
    if not is_uri(path):
        return call()
    limit = store_wait_s() if wait is None else wait
    delay = BACKOFF_S[0]
    while True:
        try:
            result = call()
        except FileNotFoundError:
            note_success(path)
            raise
        except StoreError:
            raise
        except OSError as err:
            if not is_transient(err) or limit <= 0:
                raise store_error(err, path) from None
            since = note_failure(path)
            waited = time.time() - since
            if waited >= limit:
                raise gone_too_long(path, err, waited) from None
            time.sleep(min(random.uniform(0.5, 1.5) * delay, max(0.05, limit - waited)))
            delay = min(2 * delay, BACKOFF_S[1])
            continue
        note_success(path)
        return result


def read_text(path: str, wait: float | None = None) -> str:
    if not is_uri(path):
        return Path(path).read_text()
    fs, inner = filesystem(path)

    def read() -> str:
        with fs.open_input_stream(inner) as f:
            return f.read().decode()

    return _store_call(path, read, wait)


def read_text_or_none(path: str, wait: float | None = None) -> str | None:
    """The file's text, or None where it is missing (or, on a local disk, unreadable). A store
    that does not answer is waited for (`wait`: see _store_call), then a StoreError, never taken
    for a missing file."""
    try:
        return read_text(path, wait) if is_uri(path) else Path(path).read_text(errors="replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, UnicodeDecodeError):
        return None
    except StoreError:
        raise
    except OSError:
        return None


def list_folder(path: str, wait: float | None = None) -> list[tuple[str, bool]]:
    """(name, is_dir) of the entries of a folder; empty where it does not exist."""
    import pyarrow.fs

    fs, inner = filesystem(path)
    infos = _store_call(path, lambda: fs.get_file_info(pyarrow.fs.FileSelector(inner, allow_not_found=True)), wait)
    return [(i.base_name, i.type == pyarrow.fs.FileType.Directory) for i in infos]


def write_text(path: str, text: str, wait: float | None = None) -> None:
    """Atomic on a local disk (temp file + rename); object stores write whole objects anyway."""
    write_bytes(path, text.encode(), wait)


def write_bytes(path: str, data: bytes, wait: float | None = None) -> None:
    if is_uri(path):
        fs, inner = filesystem(path)

        def write() -> None:
            with fs.open_output_stream(inner) as f:
                f.write(data)

        _store_call(path, write, wait)
        return
    atomic_write_bytes(Path(path), lambda f: f.write(data))


def upload_file(local: Path, path: str, wait: float | None = None) -> None:
    """Put a local file at `path` behind a URI as one object (stored whole or not at all)."""
    import pyarrow.fs

    fs, inner = filesystem(path)
    _store_call(path, lambda: pyarrow.fs.copy_files(str(local), inner, destination_filesystem=fs), wait)


def delete(path: str, folder: bool = False, wait: float | None = None) -> None:
    """Remove a file (or with `folder`, a folder and what it holds); one already gone is no error."""
    fs, inner = filesystem(path)
    try:
        _store_call(path, lambda: fs.delete_dir(inner) if folder else fs.delete_file(inner), wait)
    except FileNotFoundError:
        pass


def exists(path: str) -> bool:
    if not is_uri(path):
        return Path(path).exists()
    import pyarrow.fs

    fs, inner = filesystem(path)
    return _store_call(path, lambda: fs.get_file_info(inner).type) != pyarrow.fs.FileType.NotFound


@contextmanager
def local_folder(path: str, wait: float | None = None) -> Iterator[Path]:
    """A folder of the local disk holding what `path` holds: `path` itself, or for a URI a
    temporary copy removed afterwards (a checkpoint to load, say)."""
    if not is_uri(path):
        yield Path(path)
        return
    import pyarrow.fs

    fs, inner = filesystem(path)
    if _store_call(path, lambda: fs.get_file_info(inner).type, wait) != pyarrow.fs.FileType.Directory:
        raise FileNotFoundError(f"{path}: no such folder")
    folder = Path(tempfile.mkdtemp(prefix="resweep-"))
    try:
        _store_call(path, lambda: pyarrow.fs.copy_files(inner, str(folder), source_filesystem=fs,
                                                        destination_filesystem=pyarrow.fs.LocalFileSystem()), wait)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def check_writable(folder: str, need_bytes: int | None = None) -> str | None:
    """None when `folder` can take results, else a one-line reason. The free space needed is
    $RESWEEP_MIN_FREE_MB (default 200 MiB: a few checkpoints of a ResNet50)."""
    if need_bytes is None:
        need_bytes = int(float(os.environ.get("RESWEEP_MIN_FREE_MB", "200")) * 2**20)
    if is_uri(folder):
        fs, inner = filesystem(folder)
        probe = f"{inner}/.resweep-probe-{uuid.uuid4().hex}"

        def write_and_delete() -> None:
            with fs.open_output_stream(probe) as f:
                f.write(b"ok")
            fs.delete_file(probe)

        try:  # in seconds: a store that does not answer is named, not waited for
            with_time_limit(write_and_delete, check_timeout_s(), folder)
        except StoreError as err:
            return f"cannot write there: {err}"
        except OSError as err:
            return f"cannot write there: {store_error(err, folder)}"
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
