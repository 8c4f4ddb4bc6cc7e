"""One sweep three ways, side by side: resweep, a Ray Tune script as Ray's docs show it, and
an Optuna study alone (both in `tools/peers_plain.py`, which does not import resweep).

Same image folder and split (train/, val/ and test/ folders, as a user has them), model
(ResNet9), augmentation distribution (the "light" shifts and rotations), search space and
initial configuration (first), trials, epochs, ASHA / successive halving settings, CPUs per
trial and trials at a time. Before measuring it checks that the peers' model has resweep's
parameter shapes and gives resweep's output for the same weights, and that their splits hold
the same files. Rounds are interleaved (each round runs the three in a rotated order) and
each round has its own seed, so the search draw changes. resweep's decoded-image cache is
built by the check, before the clock starts; its build time is printed apart.

Prints each sweep's wall time, epochs trained, best validation accuracy, the test accuracy
of the best trial trained to the end and seconds per epoch (trial time over epochs), then
the medians and each peer's wall over resweep's. Ends with
`ratio=<the smaller of the peers' median walls / resweep's median wall>`.
Goal (issue 19): ratio >= 1.25 (resweep at most 0.8x) with resweep's best test accuracy at
least the best peer's minus 0.3 points.

    pip install animal-mnist --no-deps   # the data (benchmarks/tools/image_folder.py)
    python benchmarks/peers.py [--rounds 3] [--trials 8] [--epochs 4]
    python benchmarks/peers.py --folder glyphs --image-size 16 --rounds 5   # a generated problem
    python benchmarks/peers.py --folder ~/my-images                       # any folder of train/ val/ test/
    python benchmarks/peers.py --smoke-test   # digits, 2 trials of 1 epoch, one round
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
TOOLS = HERE / "tools"
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(TOOLS))

from image_folder import ARRAYS, write_folder  # noqa: E402

SEARCH = {"lr": {"loguniform": [1.0e-3, 1.0]}, "optimizer": {"choice": ["sgd", "adam"]},
          "weight_decay": {"loguniform": [1.0e-5, 1.0e-2]}, "batch_size": {"choice": [32, 64, 128]}}
INITIAL = {"lr": 0.05, "optimizer": "sgd", "weight_decay": 5.0e-4, "batch_size": 64}
WAYS = ["resweep", "ray-tune", "optuna"]


def make_setup(args, data: Path) -> dict:
    return {"data": str(data), "image_size": args.image_size, "width": args.width, "epochs": args.epochs,
            "trials": args.trials, "grace_period": 1, "reduction_factor": 3, "concurrency": 2, "cpus": 1,
            "search": SEARCH, "initial": INITIAL}


def preset_of(setup: dict) -> dict:
    return {
        "description": "benchmarks/peers.py: an image folder, as the peers sweep it",
        "train": {"dataset": "imagefolder", "model": "resnet9", "width": setup["width"],
                  "image_size": setup["image_size"], "augment": "light", "epochs": setup["epochs"],
                  "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5.0e-4,
                  "scheduler": "onecycle", "batch_size": 64, "device": "cpu"},
        "search": SEARCH, "initial": INITIAL,
        "sweep": {"trials": setup["trials"], "grace_period": setup["grace_period"],
                  "reduction_factor": setup["reduction_factor"], "metric": "val_acc", "mode": "max",
                  "concurrency": setup["concurrency"]},
        "resources": {"gpu": 0, "cpu": setup["cpus"]},
    }


def check_same(setup: dict, setup_file: Path, work: Path) -> float:
    """Refuse to measure unless the peers' model and splits are resweep's; returns the seconds
    resweep took to build its decoded-image cache."""
    import torch

    from trainer.config import from_dict
    from trainer.datasets import load_data
    from trainer.models import build_model

    config = from_dict({**preset_of(setup)["train"], "data_dir": setup["data"]})
    started = time.perf_counter()
    data = load_data(config)
    cache_s = time.perf_counter() - started
    torch.manual_seed(1)
    model = build_model(config, len(data.classes), in_channels=data.train.images.shape[1]).eval()
    weights = work / "weights.pt"
    torch.save(model.state_dict(), weights)
    out = subprocess.run([sys.executable, str(TOOLS / "peers_plain.py"), "check", "--setup", str(setup_file),
                          "--weights", str(weights)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"the peers' check failed: {out.stderr.strip().splitlines()[-1]}")
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    mine = {k: list(v.shape) for k, v in model.state_dict().items()}
    if theirs["shapes"] != mine:
        raise SystemExit("the peers' model differs from resweep's (parameter shapes)")
    torch.manual_seed(0)
    with torch.no_grad():
        expected = model(torch.randn(4, 3, setup["image_size"], setup["image_size"]))
    if not torch.allclose(torch.tensor(theirs["output"]), expected, atol=1e-4):
        raise SystemExit("the peers' model differs from resweep's (outputs for the same weights)")
    root = Path(setup["data"])
    for name, split in (("train", data.train), ("val", data.val), ("test", data.test)):
        files = sorted((str(Path(f).relative_to(root)), int(label)) for f, label in zip(split.files, split.labels))
        if [tuple(x) for x in theirs["splits"][name]] != files:
            raise SystemExit(f"the peers' {name} split differs from resweep's")
    return cache_s


def run_resweep(setup: dict, work: Path, seed: int) -> tuple[list[dict], float]:
    from sweeps.runfolder.run import load_run

    preset = work / "peers.yaml"
    preset.write_text(yaml.safe_dump(preset_of(setup), sort_keys=False))
    name = f"resweep-{seed}-{time.time_ns()}"
    sweep = Path(sys.executable).parent / "sweep"
    started = time.perf_counter()
    out = subprocess.run([str(sweep), "run", str(preset), "--local", "--seed", str(seed), "--data-dir", setup["data"],
                          "--storage", str(work / "runs"), "--name", name], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if out.returncode:
        raise SystemExit(f"resweep failed: {out.stderr[-1500:]}")
    run = load_run(str(work / "runs" / name))
    trials = []
    for trial_id, rows in run.history.groupby("trial_id"):
        rows = rows.sort_values("epoch")
        row = run.trials[run.trials["trial_id"] == trial_id].iloc[0]
        test = row["test_acc"]
        params = {k: row[k].item() if hasattr(row[k], "item") else row[k] for k in SEARCH}
        trials.append({"params": params, "values": rows["val_acc"].tolist(),
                       "seconds": rows["epoch_time_s"].tolist(), "test_acc": None if test != test else float(test)})
    return trials, wall


def run_peer(way: str, setup_file: Path, seed: int) -> tuple[list[dict], float]:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, str(TOOLS / "peers_plain.py"), "tune" if way == "ray-tune" else "optuna",
                          "--setup", str(setup_file), "--seed", str(seed)], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if out.returncode:
        raise SystemExit(f"{way} failed: {out.stderr[-1500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["trials"], wall


def summarise(way: str, seed: int, trials: list[dict], wall: float, epochs: int) -> dict:
    finished = [t for t in trials if len(t["values"]) == epochs and t["test_acc"] is not None]
    best = max(finished, key=lambda t: max(t["values"]))
    trained = sum(len(t["values"]) for t in trials)
    return {"way": way, "seed": seed, "wall_s": wall, "epochs": trained, "best_val": max(best["values"]),
            "best_test": best["test_acc"], "s_per_epoch": sum(sum(t["seconds"]) for t in trials) / trained,
            "best": best["params"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="animal",
                        help=f"{', '.join(ARRAYS)} (written by tools/image_folder.py), or the path of an image "
                             f"folder of train/, val/ and test/ folders of class folders")
    parser.add_argument("--data", default=None, help="where the image folder is written (default: a temp dir)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--smoke-test", action="store_true", help="digits, 2 trials of 1 epoch, one round")
    args = parser.parse_args()
    if args.smoke_test:
        args.folder, args.rounds, args.trials, args.epochs, args.width, args.image_size = "digits", 1, 2, 1, 4, 16

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.folder in ARRAYS:
            data = write_folder(args.folder, Path(args.data) if args.data else work / args.folder)
        elif all((Path(args.folder).expanduser() / split).is_dir() for split in ("train", "val", "test")):
            data = Path(args.folder).expanduser().resolve()
        else:
            raise SystemExit(f"--folder {args.folder}: neither one of {', '.join(ARRAYS)} nor a folder of "
                             f"train/, val/ and test/; pass one of those")
        setup = make_setup(args, data)
        setup_file = work / "setup.json"
        setup_file.write_text(json.dumps(setup))
        cache_s = check_same(setup, setup_file, work)
        print(f"checked: the peers' model and splits equal resweep's; resweep's image cache built in {cache_s:.1f}s")
        print(f"{args.folder}: {args.trials} trials, at most {args.epochs} epochs, ASHA grace 1 / rf 3, "
              f"{setup['concurrency']} at a time, {setup['cpus']} CPU each", flush=True)
        rows = []
        print(f"{'round':>5} {'way':>9} {'wall s':>8} {'epochs':>6} {'best val':>8} {'test':>7} {'s/epoch':>8}  best")
        for r in range(args.rounds):
            for way in WAYS[r % 3:] + WAYS[:r % 3]:
                if way == "resweep":
                    trials, wall = run_resweep(setup, work, seed=r)
                else:
                    trials, wall = run_peer(way, setup_file, seed=r)
                row = summarise(way, r, trials, wall, args.epochs)
                rows.append(row)
                print(f"{r:>5} {way:>9} {wall:>8.1f} {row['epochs']:>6} {row['best_val']:>8.4f} "
                      f"{row['best_test']:>7.4f} {row['s_per_epoch']:>8.2f}  {json.dumps(row['best'])}", flush=True)
    print("\nmedians over rounds")
    medians = {}
    for way in WAYS:
        mine = [r for r in rows if r["way"] == way]
        medians[way] = {k: statistics.median(r[k] for r in mine)
                        for k in ("wall_s", "epochs", "best_val", "best_test", "s_per_epoch")}
        m = medians[way]
        over = m["wall_s"] / medians["resweep"]["wall_s"]
        print(f"{way:>9} wall {m['wall_s']:.1f}s ({over:.2f}x resweep's)  epochs {m['epochs']:.1f}  best val "
              f"{m['best_val']:.4f}  test {m['best_test']:.4f}  s/epoch {m['s_per_epoch']:.2f}")
    best_peer = max(medians[w]["best_test"] for w in WAYS[1:])
    print(f"resweep's test accuracy minus the best peer's: {100 * (medians['resweep']['best_test'] - best_peer):+.2f} "
          f"points")
    print(f"ratio={min(medians[w]['wall_s'] for w in WAYS[1:]) / medians['resweep']['wall_s']:.3f}")


if __name__ == "__main__":
    main()
