"""One driver per run folder: `sweep run` and `sweep resume` claim the run before anything
writes to it, and a second driver is refused with one line naming the holder.

The claim is `RUN/driver.json` (sweeps.runfolder.layout), holding who drives the run: host, pid, the
command and a heartbeat.
- On a disk (NFS included) the file is held with an exclusive `flock` for the driver's life.
  The kernel lets go when the process ends, however it ends (SIGKILL too), so a dead
  driver's claim is free at once, and no clock is read.
- Behind a URI (s3://, gs://) an object store has no locks and pyarrow no conditional put,
  so the claim is a lease: the driver writes its claim, waits SETTLE_S, and reads it back;
  of two drivers that wrote within that time, the later write wins and the other sees it
  and stands down. The holder rewrites its heartbeat every HEARTBEAT_S; a claim whose
  heartbeat is older than STALE_AFTER_S (several snapshot periods), or whose driver ran on
  this host and is gone, is taken over with one line saying so.
Readers (`sweep status`, `analysis`) never need the claim.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from sweeps.errors import SweepError
from sweeps.runfolder.layout import claim_file
from sweeps.runfolder.storage import CONNECT_TIMEOUT_S, delete, is_uri, read_text_or_none, write_text

HEARTBEAT_S = float(os.environ.get("RESWEEP_HEARTBEAT_S", "10"))  # a lease's heartbeat period
STALE_AFTER_S = float(os.environ.get("RESWEEP_CLAIM_STALE_S", "60"))  # a lease older than this is taken over
SETTLE_S = 2.0  # a lease is read back this long after it is written


class ClaimRefused(SweepError):
    """Another live driver holds the run; one line naming it and what to do."""


def _pid_start(pid: int) -> str:
    """When process `pid` started (Linux: clock ticks since boot), to tell it from a later
    process given the same pid; "" where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command's name


@dataclass(frozen=True)
class Holder:
    """Who drives a run: written into its claim."""

    host: str
    pid: int
    pid_start: str
    command: str  # sweep run | sweep resume
    token: str  # this claim's own id
    since: float  # time.time() when claimed
    heartbeat: float  # time.time() of the last heartbeat (leases)

    @classmethod
    def me(cls, command: str) -> Holder:
        now = time.time()
        return cls(socket.gethostname(), os.getpid(), _pid_start(os.getpid()), command, uuid.uuid4().hex, now, now)

    @classmethod
    def parse(cls, text: str | None) -> Holder | None:
        try:
            return cls(**json.loads(text or ""))
        except (ValueError, TypeError):
            return None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def gone(self) -> bool:
        """True when this holder ran on this host and its process is no longer there."""
        if self.host != socket.gethostname():
            return False
        start = _pid_start(self.pid)
        if start:
            return bool(self.pid_start) and start != self.pid_start
        if Path("/proc/self/stat").exists():
            return True  # no /proc entry for that pid: it ended
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"`{self.command}` on {self.host} (pid {self.pid}, since {since})"


def _refusal(run_path: str, holder: Holder | None, command: str) -> ClaimRefused:
    who = holder.describe() if holder else "another driver"
    quoted = shlex.quote(run_path)
    then = f"then `sweep resume {quoted}`" if command == "sweep resume" else "or pass another --name"
    return ClaimRefused(f"{run_path} is being driven by {who}; wait for it to end (`sweep status {quoted} "
                        f"--watch`) or stop it there with Ctrl-C, {then}")


class Claim:
    """The claim of one driver on one run folder; `take` it, `release` it when done (or use
    it as a context manager). `took_over` is the earlier holder whose claim was stale."""

    def __init__(self, run_path: str, holder: Holder, took_over: Holder | None, created: bool):
        self.run_path, self.holder, self.took_over, self._created = run_path, holder, took_over, created
        self._fd: int | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @classmethod
    def take(cls, run_path: str, command: str) -> Claim:
        """Claim `run_path` for this process, or raise ClaimRefused (changing nothing)."""
        return cls._take_lease(run_path, command) if is_uri(run_path) else cls._take_lock(run_path, command)

    # a local folder: a flock held for the driver's life

    @classmethod
    def _take_lock(cls, run_path: str, command: str) -> Claim:
        import fcntl

        folder = Path(run_path)
        created = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        path = claim_file(run_path)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = None
                for _ in range(40):  # the holder writes who it is just after it locks
                    holder = Holder.parse(os.pread(fd, 65536, 0).decode(errors="replace"))
                    if holder is not None:
                        break
                    time.sleep(0.025)
                os.close(fd)
                raise _refusal(run_path, holder, command) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the file was released and removed while we opened it: open the new one
        earlier = Holder.parse(os.pread(fd, 65536, 0).decode(errors="replace"))  # a driver that did not release
        holder = Holder.me(command)
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.to_json().encode(), 0)
        os.fsync(fd)
        claim = cls(run_path, holder, earlier, created)
        claim._fd = fd
        return claim

    # behind a URI: a lease with a heartbeat

    @classmethod
    def _take_lease(cls, run_path: str, command: str) -> Claim:
        path = claim_file(run_path)
        earlier = Holder.parse(read_text_or_none(path))
        if earlier is not None and not _stale(earlier):
            raise _refusal(run_path, earlier, command)
        holder = Holder.me(command)
        write_text(path, holder.to_json())
        time.sleep(SETTLE_S)  # a driver that wrote in the meantime wins: the later write is the one kept
        now = Holder.parse(read_text_or_none(path))
        if now is None or now.token != holder.token:
            raise _refusal(run_path, now, command)
        claim = cls(run_path, holder, earlier, created=False)
        claim._beat = threading.Thread(target=claim._heartbeat, daemon=True, name="resweep-claim-heartbeat")
        claim._beat.start()
        return claim

    def _heartbeat(self) -> None:
        path = claim_file(self.run_path)
        while not self._stop.wait(HEARTBEAT_S):
            try:  # one try a beat (wait=0): a beat missed while the store is away is made up by the next
                current = Holder.parse(read_text_or_none(path, wait=0))
                if current is not None and current.token != self.holder.token:
                    print(f"warning: {self.run_path} was taken over by {current.describe()}; this driver's "
                          f"heartbeat stops", flush=True)
                    return
                if self._stop.is_set():
                    return  # released meanwhile: the claim must not be written again
                self.holder = Holder(**{**asdict(self.holder), "heartbeat": time.time()})
                write_text(path, self.holder.to_json(), wait=0)
            except Exception:  # the store is away for now: the next beat tries again
                continue

    def note(self) -> str | None:
        """The line to print when the claim took over from a driver that had not released it."""
        if self.took_over is None:
            return None
        age = time.time() - self.took_over.heartbeat
        # on a disk the lock was free: its driver ended; behind a URI its lease went stale
        why = "ended without letting go" if not is_uri(self.run_path) or self.took_over.gone() else \
            f"last answered {age:.0f} s ago"
        return f"note: {self.run_path}: taking over from {self.took_over.describe()}, which {why}"

    def release(self, remove_created: bool = False) -> None:
        """Let go of the run. `remove_created`: also remove the run folder if this claim created
        it and nothing else is in it (a command refused before it wrote anything)."""
        self._stop.set()
        path = claim_file(self.run_path)
        if self._fd is not None:
            import fcntl

            try:
                os.unlink(path)  # while still held: a driver that opens it next finds a new file
            except FileNotFoundError:
                pass
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
            if remove_created and self._created:
                try:
                    os.rmdir(self.run_path)
                except OSError:
                    pass  # something else is there: kept
            return
        if self._beat is not None:
            self._beat.join(timeout=3 * CONNECT_TIMEOUT_S)  # a beat under way ends before the claim goes
        try:
            current = Holder.parse(read_text_or_none(path, wait=0))
            if current is not None and current.token == self.holder.token:
                delete(path)
        except Exception:  # the store is away: the lease goes stale by itself
            pass

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _stale(holder: Holder) -> bool:
    return holder.gone() or time.time() - holder.heartbeat > STALE_AFTER_S
