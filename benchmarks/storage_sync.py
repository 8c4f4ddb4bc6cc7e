"""What copying a sweep to S3 costs the driver, by Tune's snapshot period.

A sweep whose results go to a bucket: every TUNE_GLOBAL_CHECKPOINT_S seconds the driver
snapshots Tune's state and copies it, with every trial's result files, to the bucket (and
resweep archives the state as one object; also when a trial is added). Trials write their
checkpoints there themselves, as each epoch ends. Here: short trials (several epochs each,
a checkpoint per epoch), local Ray on this machine, results in moto's S3 server on
127.0.0.1; for each period, the sweep's wall time and the S3 requests it made, read from
the server's access log. Ends with `ratio=<wall at the shortest period / wall at
resweep's default of 10 s>`.

    python benchmarks/storage_sync.py [--trials 16] [--epochs 8] [--images 1000] [--periods 2 10 30]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestration import TRIVIAL  # noqa: E402  (this folder: the same trivially short trials)

from sweeps.engine.driver import run_sweep  # noqa: E402
from sweeps.planner import make_plan  # noqa: E402
from sweeps.presets import load_preset  # noqa: E402
from sweeps.runfolder.run import load_run  # noqa: E402
from tools.localcluster import CREDENTIALS, S3Server  # noqa: E402

REQUEST = re.compile(r'"(GET|PUT|POST|HEAD|DELETE) (\S+)')


def requests(log: Path) -> collections.Counter:
    """S3 requests by kind, from the server's access log (a batch delete is a POST ...?delete)."""
    kinds = collections.Counter()
    for method, path in REQUEST.findall(log.read_text(errors="replace")):
        kinds["delete" if method == "DELETE" or "?delete" in path else
              "write" if method in ("PUT", "POST") else "read"] += 1
    return kinds


def sweep(s3: S3Server, folder: Path, trials: int, epochs: int, images: int, period: float) -> dict:
    preset = folder / "trivial.yaml"
    preset.write_text(yaml.safe_dump({**TRIVIAL, "train": {**TRIVIAL["train"], "epochs": epochs,
                                                           "synthetic_samples": images},
                                      "sweep": {**TRIVIAL["sweep"], "grace_period": epochs}}))
    plan = make_plan(load_preset(str(preset)), overrides=[], samples=trials, concurrency=None, gpus=None,
                          cpus=None, storage=s3.uri("runs"), name=f"period-{period:g}", seed=0)
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = f"{period:g}"  # Tune reads it when the sweep starts
    before = requests(s3.root / "moto.log")
    start = time.perf_counter()
    run_sweep(plan, local=True)
    wall = time.perf_counter() - start
    made = requests(s3.root / "moto.log") - before
    run = load_run(plan.path)
    assert len(run.trials) == trials and (run.trials["epochs_trained"] == epochs).all(), run.trials
    return {"period": period, "wall_s": wall, "puts": made["write"], "reads": made["read"],
            "deletes": made["delete"], "epochs": int(run.trials["epochs_trained"].sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--images", type=int, default=1000, help="synthetic images per trial (sets epoch length)")
    parser.add_argument("--periods", type=float, nargs="+", default=[2, 10, 30])
    args = parser.parse_args()
    os.environ.update(CREDENTIALS)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        s3 = S3Server(Path(folder) / "s3").start()
        try:
            for period in args.periods:
                rows.append(sweep(s3, Path(folder), args.trials, args.epochs, args.images, period))
        finally:
            s3.stop()
    print(f"{args.trials} short trials x {args.epochs} epochs ({args.images} images of 8 px), 2 at a time, local Ray "
          f"({os.cpu_count()} cores), results in moto's S3 server on 127.0.0.1")
    print(f"{'snapshot period s':>18}{'sweep wall s':>14}{'S3 writes':>11}{'S3 reads':>10}{'S3 deletes':>12}"
          f"{'writes per epoch':>18}{'writes per minute':>19}")
    for r in rows:
        print(f"{r['period']:>18g}{r['wall_s']:>14.1f}{r['puts']:>11}{r['reads']:>10}{r['deletes']:>12}"
              f"{r['puts'] / r['epochs']:>18.1f}{r['puts'] / r['wall_s'] * 60:>19.0f}")
    default = next((r for r in rows if r["period"] == 10), rows[-1])
    print(f"ratio={rows[0]['wall_s'] / default['wall_s']:.2f}")


if __name__ == "__main__":
    main()
