"""A sweep on a SLURM allocation: the job script `sweep slurm` writes (and submits).

The script does what Ray's SLURM guide does, with the run folder the jobs share:
- a Ray head on the allocation's first node and one worker on each other node, each a job
  step (`srun --overlap`), with the CPUs and GPUs SLURM gave the node, token authentication
  and a Ray temp folder of the job's own; the head's address is the one SLURM reaches it at
  (its NodeAddr), and its ports follow from the job id, so two jobs on one node do not meet;
- then the driver on the first node: `sweep resume RUN`. `sweep slurm` wrote the run's plan
  before submitting, so the first job starts the sweep from it and every later job (the
  same script submitted again) continues it: trials that finished stay, the others go on
  from their newest checkpoint;
- `--signal=B:USR1@GRACE` gives the driver GRACE seconds of notice before the time limit: the
  script passes it on as SIGTERM, which the driver takes as Ctrl-C: it saves the sweep and
  ends, and the job ends its Ray nodes with itself. `scancel` (SIGTERM) is taken the same way.

This module writes text; it neither submits nor imports Ray.
"""

from __future__ import annotations

import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from sweeps.errors import SweepError
from sweeps.runfolder.plan import SweepPlan

GRACE_S = 300  # default notice before the time limit: a checkpointed epoch and Tune's save fit in it
# The job's three ports (GCS, Ray client, dashboard): PORT_BASE + 3 * (job id mod PORT_SLOTS) and
# the two after, above Ray's worker ports (10002-19999) and below Linux's ephemeral ones (32768-)
PORT_BASE = 20000
PORT_SLOTS = 3333


@dataclass(frozen=True)
class Allocation:
    """What the job asks SLURM for."""
    nodes: int  # nodes; Ray's head runs on the first, with trials like the others
    gpus_per_node: int  # GPUs of each node (0: CPU trials)
    cpus_per_node: int  # CPUs of each node, for the trials and the Ray processes
    time: str | None  # the time limit (SLURM's formats: 12:00:00, 1-00:00:00); the partition's by default
    partition: str | None  # the partition; the cluster's default when None
    account: str | None  # the account charged; the user's default when None
    grace_s: int = GRACE_S  # the driver's notice before the time limit


def allocation_for(plan: SweepPlan, nodes: int, gpus_per_node: int | None, cpus_per_node: int | None,
                   time: str | None, partition: str | None, account: str | None, grace_s: int = GRACE_S
                   ) -> Allocation:
    """The allocation of `plan`'s sweep: GPUs per node default to 1 for GPU trials, CPUs per node
    to what the trials a node holds ask for; one line where a trial would not fit a node."""
    if nodes < 1:
        raise SweepError(f"--nodes {nodes}: a sweep needs at least 1 node")
    gpus = gpus_per_node if gpus_per_node is not None else (max(1, math.ceil(plan.gpu)) if plan.gpu > 0 else 0)
    if gpus < 0:
        raise SweepError(f"--gpus-per-node {gpus}: give 0 or more")
    if plan.gpu > gpus:
        raise SweepError(f"each trial asks for {plan.gpu:g} GPU and a node would have {gpus}; pass "
                         f"--gpus-per-node {math.ceil(plan.gpu)}, or --gpus-per-trial 0 for CPU trials")
    per_node = int(gpus // plan.gpu) if plan.gpu > 0 else 1  # trials a node runs at once
    cpus = cpus_per_node if cpus_per_node is not None else max(1, math.ceil(per_node * plan.cpu))
    if plan.cpu > cpus:
        raise SweepError(f"each trial asks for {plan.cpu:g} CPUs and a node would have {cpus}; pass "
                         f"--cpus-per-node {math.ceil(plan.cpu)} or more, or a smaller --cpus-per-trial")
    if grace_s < 30:
        raise SweepError(f"--grace {grace_s}: the driver needs at least 30 s to save the sweep")
    for option, value in (("--time", time), ("--partition", partition), ("--account", account)):
        if value is not None and (not value or any(c.isspace() for c in value)):
            raise SweepError(f"{option} {value!r}: give one word, as sbatch takes it")
    return Allocation(nodes, gpus, cpus, time, partition, account, grace_s)


def job_script(plan: SweepPlan, allocation: Allocation, log_dir: Path, bin_dir: Path | None = None) -> str:
    """The sbatch script that runs (and, submitted again, continues) `plan`'s sweep on `allocation`.
    `bin_dir` holds the `sweep` and `ray` of the Python environment every node runs (this one's
    by default: on a cluster, a virtual environment on the shared file system)."""
    a = allocation
    bin_dir = bin_dir or Path(sys.executable).parent
    q = shlex.quote
    sbatch = [f"--job-name={q('resweep-' + plan.name)}", f"--nodes={a.nodes}", "--ntasks-per-node=1",
              f"--cpus-per-task={a.cpus_per_node}"]
    sbatch += [f"--gpus-per-node={a.gpus_per_node}"] if a.gpus_per_node else []
    sbatch += [f"--time={a.time}"] if a.time else []
    sbatch += [f"--partition={a.partition}"] if a.partition else []
    sbatch += [f"--account={a.account}"] if a.account else []
    sbatch += [f"--signal=B:USR1@{a.grace_s}", f"--output={q(str(log_dir / (plan.name + '-%j.out')))}",
               "--open-mode=append"]
    header = "\n".join(f"#SBATCH {line}" for line in sbatch)
    return f"""#!/bin/bash
# resweep: the sweep {plan.name} (preset {plan.preset}) on SLURM, written by `sweep slurm`.
# Submit this file again to continue the sweep after a time limit or a scancel: every job
# resumes the run folder below.
{header}
set -uo pipefail

bin={q(str(bin_dir))}  # the Python environment of resweep; every node must see it
run={q(plan.path)}  # the run folder: a folder every node sees, or a bucket
export PATH="$bin:$PATH" RAY_AUTH_MODE=token RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
token=${{RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}}  # the cluster's token, in the shared home
[ -s "$token" ] || ray get-auth-token --generate > /dev/null || exit 1

mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
address_of() {{ scontrol show node "$1" | sed -n 's/.*NodeAddr=\\([^ ]*\\).*/\\1/p'; }}
head_ip=$(address_of "${{nodes[0]}}")
port=$(({PORT_BASE} + 3 * (SLURM_JOB_ID % {PORT_SLOTS})))
ray_tmp=${{TMPDIR:-/tmp}}/ray-$SLURM_JOB_ID  # short: Ray's socket paths must stay under ~100 characters
echo "resweep: Ray head on ${{nodes[0]}} ($head_ip:$port), ${{#nodes[@]}} node(s), run $run"

steps=()
start_node() {{  # NODE IP [ray start options]: a Ray node as a job step, until the job ends
    local node=$1 ip=$2; shift 2
    srun --nodes=1 --ntasks=1 --overlap --quiet -w "$node" \\
        ray start --block --node-ip-address="$ip" --temp-dir="$ray_tmp" --num-cpus="$SLURM_CPUS_PER_TASK" \\
        --num-gpus={a.gpus_per_node} --disable-usage-stats "$@" &
    steps+=($!)
}}
end_ray() {{ [ ${{#steps[@]}} -eq 0 ] || {{ kill "${{steps[@]}}" 2>/dev/null; wait "${{steps[@]}}" 2>/dev/null; }}; }}
trap end_ray EXIT

start_node "${{nodes[0]}}" "$head_ip" --head --port="$port" --ray-client-server-port=$((port + 1)) \\
    --dashboard-host=127.0.0.1 --dashboard-port=$((port + 2))
for _ in $(seq 120); do (exec 3<>"/dev/tcp/$head_ip/$port") 2>/dev/null && break; sleep 1; done
for node in "${{nodes[@]:1}}"; do
    start_node "$node" "$(address_of "$node")" --address="$head_ip:$port"
done

# the driver; SLURM's notice before the time limit (USR1) and scancel (TERM) stop it as Ctrl-C does
sweep resume "$run" --address="$head_ip:$port" &
driver=$!
trap 'kill -TERM "$driver" 2>/dev/null' USR1 TERM
while :; do
    wait "$driver"; status=$?
    kill -0 "$driver" 2>/dev/null || break  # a trap ended the wait, not the driver
done
if [ "$status" -ne 0 ]; then
    echo "resweep: the driver exited $status; submit this script again to continue the sweep" >&2
fi
exit "$status"
"""
