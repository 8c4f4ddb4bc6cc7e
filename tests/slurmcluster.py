"""A SLURM cluster of the tests' own on this one machine, from Debian's packages (slurm-wlm,
munge): munged with its own key and socket, slurmctld, and one slurmd per node, all on
127.0.0.1 with free ports and with their configuration, state and logs in one folder. The
nodes are slurmd daemons started with `-N NAME` on the same host, each with a CPU; no
cgroups (proctrack/linuxproc). Every daemon runs in a session of its own and `close()` ends
jobs first (scancel), then each daemon's session by its id, then any process left that runs
from this cluster's folder, by pid."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "scancel", "scontrol", "squeue", "sinfo", "srun")
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL",
         "DEADLINE"}


def missing() -> str | None:
    """Why SLURM cannot run here (None when it can)."""
    lost = [name for name in DAEMONS + CLIENTS if shutil.which(name) is None
            and not Path("/usr/sbin", name).exists()]
    if lost:
        return f"SLURM is not installed ({', '.join(lost)} missing): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "the one-machine SLURM runs its daemons as root"
    return None


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _sbin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class SlurmCluster:
    def __init__(self, nodes: int = 2, cpus_per_node: int = 1):
        # short: Ray's socket paths under the jobs' $TMPDIR stay under ~100 characters
        self.root = Path(tempfile.mkdtemp(prefix="slm-", dir="/tmp"))
        self.root.chmod(0o755)  # munged wants its socket's folders open to all
        self.nodes = [f"n{i + 1}" for i in range(nodes)]
        self.cpus = cpus_per_node
        self.host = socket.gethostname().split(".")[0]
        self.sessions: list[subprocess.Popen] = []
        for sub in ("munge", "run", "log", "state", "home", "tmp"):
            (self.root / sub).mkdir()
        (self.root / "munge").chmod(0o700)
        (self.root / "run").chmod(0o755)
        self.conf = self.root / "slurm.conf"
        # Ray's ports in the job script follow the job id: start the ids where those are free here
        self.first_job_id = next(
            i for i in range(1000 + os.getpid() % 3000, 9000, 7)
            if all(_port_free(20000 + 3 * ((i + k) % 3333) + d) for k in range(8) for d in range(3)))

    # --- start ---------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment of a user of this cluster (sbatch passes it on to the jobs)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SLURM_", "RAY_")) and k not in ("TMPDIR",)}
        env.update(SLURM_CONF=str(self.conf), HOME=str(self.root / "home"), TMPDIR=str(self.root / "tmp"),
                   RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
        return env

    def _start(self, cmd: list[str], log: str) -> subprocess.Popen:
        with open(self.root / "log" / log, "ab") as out:
            process = subprocess.Popen(cmd, env=self.env(), stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.sessions.append(process)
        return process

    def start(self, timeout: float = 60) -> SlurmCluster:
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        socket_path = self.root / "run" / "munge.sock"
        self._start([_sbin("munged"), "-F", f"--key-file={key}", f"--socket={socket_path}",
                     f"--pid-file={self.root / 'run' / 'munged.pid'}", f"--log-file={self.root / 'log' / 'munged.log'}",
                     f"--seed-file={self.root / 'munge' / 'seed'}"], "munged.out")
        self._wait(lambda: socket_path.exists(), timeout, "munged")
        ctld_port, *node_ports = _free_ports(1 + len(self.nodes))
        r = self.root
        nodes = "\n".join(f"NodeName={n} NodeAddr=127.0.0.1 NodeHostname={self.host} Port={p} CPUs={self.cpus} "
                          f"RealMemory=2000 State=UNKNOWN" for n, p in zip(self.nodes, node_ports))
        self.conf.write_text(f"""ClusterName=resweeptest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={socket_path}
CredType=cred/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/state/%n
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd-%n.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
FirstJobId={self.first_job_id}
KillWait=15
MinJobAge=600
InactiveLimit=0
{nodes}
PartitionName=debug Nodes={','.join(self.nodes)} Default=YES MaxTime=INFINITE State=UP
""")
        self._start([_sbin("slurmctld"), "-D", "-f", str(self.conf)], "slurmctld.out")
        for node in self.nodes:
            self._start([_sbin("slurmd"), "-D", "-N", node, "-f", str(self.conf)], f"slurmd-{node}.out")
        self._wait(self._idle, timeout, "the nodes to be idle")
        return self

    def _idle(self) -> bool:
        out = self.cmd("sinfo", "-h", "-N", "-o", "%N %T", check=False).stdout.split()
        return sum(state == "idle" for state in out[1::2]) == len(self.nodes)

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            for process in self.sessions:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[0]} ended ({process.returncode}) waiting for {what}: "
                                       f"{self.logs()}")
            time.sleep(0.3)
        raise TimeoutError(f"waited {timeout:g} s for {what}: {self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                         for p in sorted((self.root / "log").iterdir()))

    # --- use -----------------------------------------------------------------------------

    def cmd(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env(), capture_output=True, text=True, check=check,
                              timeout=timeout)

    def job(self, job_id: str) -> dict[str, str]:
        """scontrol's fields of a job (JobState, ExitCode, ...)."""
        out = self.cmd("scontrol", "show", "job", "-o", job_id).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def wait_job(self, job_id: str, timeout: float = 300) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fields = self.job(job_id)
            if fields.get("JobState") in ENDED:
                return fields
            time.sleep(1)
        raise TimeoutError(f"job {job_id} still {self.job(job_id).get('JobState')} after {timeout:g} s")

    def wait_running(self, job_id: str, timeout: float = 60) -> None:
        self._wait(lambda: self.job(job_id).get("JobState") == "RUNNING", timeout, f"job {job_id} to run")

    def processes(self) -> list[tuple[int, str]]:
        """(pid, command line) of the running processes that mention this cluster's folder,
        other than the daemons: what the jobs left (Ray's nodes run from $TMPDIR/...)."""
        mine = {p.pid for p in self.sessions}
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in mine:
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if str(self.root) in cmdline and state != "Z" and not cmdline.startswith(DAEMON_PREFIXES):
                found.append((int(entry.name), cmdline))
        return found

    # --- end -----------------------------------------------------------------------------

    def close(self) -> None:
        try:
            jobs = self.cmd("squeue", "-h", "-o", "%i", check=False, timeout=20).stdout.split()
            for job in jobs:
                self.cmd("scancel", job, check=False, timeout=20)
            deadline = time.monotonic() + 40
            while jobs and time.monotonic() < deadline and \
                    self.cmd("squeue", "-h", "-o", "%i", check=False, timeout=20).stdout.split():
                time.sleep(1)
        except (OSError, subprocess.SubprocessError):
            pass
        for process in reversed(self.sessions):  # the slurmds before slurmctld, munged last
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for process in self.sessions:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(5)
        for pid, _ in self.processes():  # a job's process that outlived its slurmstepd
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


DAEMON_PREFIXES = tuple(_sbin(name) for name in DAEMONS) + ("slurmstepd",)
