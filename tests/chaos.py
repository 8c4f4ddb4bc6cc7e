"""Chaos under load, on the one-machine cluster (`tools.localcluster`): a sweep of many trials
on autoscaled fake GPU workers, results in the S3 server behind a fault-injecting TCP proxy
(tests/faultproxy.py), while the store goes away twice for 30-60 s and a worker node is killed
(its raylet and every process under it SIGKILLed, as a spot reclaim looks) every 20-40 s at
random, one of them during an outage. What happened, measured: `tests/test_chaos.py` runs it
once and checks it; `make chaos` runs it RUNS times after an undisturbed run of the same sweep,
and prints the figures docs/RELIABILITY.md records.

    python tests/chaos.py --runs 5 [--keep FOLDER]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/, not installed: `make chaos` runs this file
from faultproxy import FaultProxy  # noqa: E402

from tools.localcluster import DEMO_PRESET, Driver, FakeCluster, S3Server, cli  # noqa: E402

PRESET = {**DEMO_PRESET, "description": "chaos: digits, a small ResNet9, 1 (fake) GPU per trial",
          "sweep": {**DEMO_PRESET["sweep"], "trials": 24, "concurrency": 4}}


@dataclass
class Chaos:
    """What the chaos did, in seconds since the driver started."""

    outages: list[tuple[float, float]] = field(default_factory=list)
    kills: list[tuple[float, str]] = field(default_factory=list)  # (when, node id)

    def kills_during_outages(self) -> int:
        return sum(any(a <= t <= b for a, b in self.outages) for t, _ in self.kills)


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                tree.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return tree


def worker_raylets(cluster: FakeCluster) -> dict[str, int]:
    """node id -> raylet pid, of the cluster's GPU workers (the fake provider names each node in
    its raylet's environment)."""
    found = {}
    for pid, cmd in cluster.survivors():
        if "/raylet/raylet " in cmd:
            env = _environ(pid)
            if env.get("RAY_NODE_TYPE_NAME") == "gpu_worker" and env.get("RAY_OVERRIDE_NODE_ID_FOR_TESTING"):
                found[env["RAY_OVERRIDE_NODE_ID_FOR_TESTING"]] = pid
    return found


def kill_node(raylet: int) -> int:
    """SIGKILL a node's raylet and every process under it (its trial workers, its agents) at
    once, as an instance that vanishes; returns how many processes."""
    tree, doomed, todo = _children(), [], [raylet]
    while todo:
        pid = todo.pop()
        doomed.append(pid)
        todo.extend(tree.get(pid, []))
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(doomed)


def strike(cluster: FakeCluster, proxy: FaultProxy, driver: Driver, rng: random.Random, chaos: Chaos,
           start: float, say=print, outages: int = 2, outage_s: tuple[float, float] = (30, 60),
           kill_every_s: tuple[float, float] | None = (20, 40), gap_s: tuple[float, float] = (40, 70)) -> None:
    """The chaos, until the driver ends: kills every `kill_every_s` at random (None: none), outages
    of `outage_s` starting 25 s in and `gap_s` after the last one ended, and a kill 8-15 s into each."""
    next_kill = start + rng.uniform(*kill_every_s) if kill_every_s else float("inf")
    next_outage = start + 25.0
    down_since = outage_ends = kill_in_outage = None
    while driver.process.poll() is None:
        now = time.monotonic()
        if outage_ends is None and len(chaos.outages) < outages and now >= next_outage:
            length = rng.uniform(*outage_s)
            proxy.down()
            down_since, outage_ends = now, now + length
            kill_in_outage = now + rng.uniform(8, 15) if kill_every_s else None
            say(f"  [{now - start:5.1f} s] store away for {length:.0f} s")
        if outage_ends is not None and now >= outage_ends:
            proxy.up()
            chaos.outages.append((down_since - start, now - start))
            say(f"  [{now - start:5.1f} s] store back")
            outage_ends, next_outage = None, now + rng.uniform(*gap_s)
        in_outage_kill = kill_in_outage is not None and now >= kill_in_outage
        if now >= next_kill or in_outage_kill:
            nodes = worker_raylets(cluster)
            if nodes:
                node = rng.choice(sorted(nodes))
                count = kill_node(nodes[node])
                chaos.kills.append((now - start, node))
                say(f"  [{now - start:5.1f} s] worker node ...{node[-6:]} killed ({count} processes)")
            if in_outage_kill:
                kill_in_outage = None
            else:
                next_kill = now + rng.uniform(*kill_every_s)
        time.sleep(0.2)
    if outage_ends is not None:  # the sweep ended during an outage
        proxy.up()
        chaos.outages.append((down_since - start, time.monotonic() - start))


def run_sweep(root: Path, name: str, seed: int, disturbed: bool, say=print, trials: int | None = None,
              **chaos_args: Any) -> dict[str, Any]:
    """One sweep of PRESET (of `trials` where given) on a fresh cluster and store; with `disturbed`,
    under the chaos above (`strike`'s settings from `chaos_args`)."""
    root.mkdir(parents=True, exist_ok=True)
    preset = {**PRESET, "sweep": {**PRESET["sweep"], "trials": trials or PRESET["sweep"]["trials"]}}
    (root / "chaos.yaml").write_text(yaml.safe_dump(preset))
    s3 = S3Server(root / "s3").start()
    proxy = FaultProxy(s3.port)
    cluster = FakeCluster(root / "cluster", max_workers=PRESET["sweep"]["concurrency"],
                          extra_env={"TUNE_GLOBAL_CHECKPOINT_S": "2"}).start()
    chaos = Chaos()
    storage = f"s3://{s3.bucket}/runs?endpoint_override={proxy.endpoint}&scheme=http"
    run = f"s3://{s3.bucket}/runs/{name}?endpoint_override={proxy.endpoint}&scheme=http"
    try:
        say(f"$ sweep run chaos.yaml --storage ... --name {name}" + ("   (under chaos)" if disturbed else ""))
        start = time.monotonic()
        driver = Driver(cli("sweeps", "run", str(root / "chaos.yaml"), "--storage", storage, "--name", name,
                            "--seed", str(seed)), cluster.env(), root)
        if disturbed:
            strike(cluster, proxy, driver, random.Random(seed), chaos, start, say, **chaos_args)
        code = driver.process.wait(1800)
        driver.reader.join(5)
        (root / "driver.log").write_text("".join(f"{t - start:7.1f} {line}\n" for t, line in driver.lines))
        wall = time.monotonic() - start
        report = subprocess.run(cli("analysis", "report", run, "--gradcam-samples", "0", "--out",
                                    str(root / "report")), env=cluster.env(), cwd=root, capture_output=True,
                                text=True, timeout=600)
        figures = measure(run, code, wall, chaos, driver, report, root / "report")
    finally:
        cluster.stop()
        proxy.close()
        s3.stop()
    figures["survivors"] = cluster.survivors() + (s3.session.members() if s3.session else [])
    say(f"  exit {figures['exit']} after {wall:.0f} s: {figures['trials']} trials, "
        f"{figures['terminated']} TERMINATED, {figures['retries']} retries, {figures['node_losses']} node losses; "
        f"{len(chaos.kills)} nodes killed ({chaos.kills_during_outages()} during an outage), "
        f"{len(chaos.outages)} outages ({', '.join(f'{b - a:.0f} s' for a, b in chaos.outages) or 'none'}); "
        f"epochs re-trained {figures['retrained']}, missing {figures['missing']} {figures['missing_epochs'] or ''}, "
        f"in the results only as replayed {figures['replay_only']}; report exit {report.returncode}")
    return figures


def text_or_empty(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def measure(run: str, code: int, wall: float, chaos: Chaos, driver: Driver,
            report: subprocess.CompletedProcess, report_dir: Path) -> dict[str, Any]:
    from sweeps.runfolder.layout import is_trial_folder, trial_folder
    from sweeps.runfolder.results import read_results
    from sweeps.runfolder.run import load_run
    from sweeps.runfolder.storage import list_folder
    from sweeps.runfolder.tunestate import experiment_state

    loaded = load_run(run)
    trials, states = loaded.trials, experiment_state(run)
    retrained, over, missing, replay_only = 0, [], {}, 0
    for _, trial in trials.iterrows():
        rows = [r for r in read_results(trial_folder(run, states[trial["trial_id"]]["folder"]), keep_repeats=True)
                if not r.get("failure")]
        trained = [int(r["epoch"]) for r in rows if not r.get("replayed")]
        again = len(trained) - len(set(trained))
        retrained += again
        expected = set(range(1, int(trial["epochs_trained"]) + 1))
        lost = expected - {int(r["epoch"]) for r in rows}
        if lost:
            missing[trial["trial_id"]] = sorted(lost)
        # stored with its checkpoint, its first report lost with the node: in the results as replayed
        replay_only += len(expected - set(trained) - lost)
        if again > int(trial["node_losses"]):  # at most one epoch trained again per node it lost
            over.append(trial["trial_id"])
    return {"exit": code, "wall_s": wall, "planned": loaded.plan.trials, "trials": len(trials),
            "trial_folders": sum(1 for n, is_dir in list_folder(run) if is_dir and is_trial_folder(n)),
            "terminated": int((trials["status"] == "TERMINATED").sum()), "retries": int(trials["retries"].sum()),
            "node_losses": int(trials["node_losses"].sum()), "retrained": retrained, "over": over,
            "missing": sum(len(v) for v in missing.values()), "missing_epochs": missing,
            "replay_only": replay_only, "epochs": int(trials["epochs_trained"].sum()), "kills": len(chaos.kills),
            "kills_during_outages": chaos.kills_during_outages(), "outages": list(chaos.outages),
            "report_exit": report.returncode, "report": report.stdout + report.stderr,
            "report_text": text_or_empty(Path(report_dir) / "report.md"),
            "output": "\n".join(line for _, line in driver.lines)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="sweeps under chaos (after one undisturbed)")
    parser.add_argument("--keep", type=Path, default=None, help="folder for the logs and reports (default: temp)")
    parser.add_argument("--long-outage", type=float, default=None, metavar="S",
                        help="instead: one sweep through a single store outage of S seconds, no node killed")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="resweep-chaos-"))
    if args.long_outage:
        long = run_sweep(root / "long", "long", seed=1, disturbed=True, outages=1,
                         outage_s=(args.long_outage, args.long_outage), kill_every_s=None)
        sys.exit(0 if long["exit"] == 0 and long["terminated"] == long["planned"] and not long["missing"] else 1)
    calm = run_sweep(root / "calm", "calm", seed=0, disturbed=False)
    runs = [run_sweep(root / f"run-{i}", f"chaos-{i}", seed=i, disturbed=True) for i in range(1, args.runs + 1)]
    clean = sum(r["exit"] == 0 and r["terminated"] == r["trials"] == r["planned"] == r["trial_folders"]
                and not r["missing"] and not r["over"] and not r["retries"] and r["report_exit"] == 0
                and not r["survivors"] for r in runs)
    lost = sorted(r["wall_s"] - calm["wall_s"] for r in runs)
    print(f"\n{len(runs)} chaos runs of {PRESET['sweep']['trials']} trials, {PRESET['sweep']['concurrency']} at a "
          f"time: strikes survived {sum(r['kills'] + len(r['outages']) for r in runs)} "
          f"({sum(r['kills'] for r in runs)} nodes killed, {sum(r['kills_during_outages'] for r in runs)} of them "
          f"during an outage; {sum(len(r['outages']) for r in runs)} store outages); trials ERROR "
          f"{sum(r['trials'] - r['terminated'] for r in runs)}; epochs missing {sum(r['missing'] for r in runs)}; "
          f"epochs re-trained {sum(r['retrained'] for r in runs)} (of {sum(r['epochs'] for r in runs)}; "
          f"node losses {sum(r['node_losses'] for r in runs)}); retries {sum(r['retries'] for r in runs)}; "
          f"wall time {calm['wall_s']:.0f} s undisturbed, lost under chaos: median {lost[len(lost) // 2]:.0f} s "
          f"(min {lost[0]:.0f}, max {lost[-1]:.0f}); clean runs {clean}/{len(runs)}")
    print(f"logs and reports: {root}")
    sys.exit(0 if clean == len(runs) else 1)


if __name__ == "__main__":
    main()
