"""Population-based training against resweep's default search, at the same trials and epochs:
PBT and PB2 (sweep.scheduler: pbt / pb2; the learning rate and weight decay found while
training, constant between decisions, SGD) against the default (the preset's initial
configuration, Sobol points over lr, optimizer, weight decay and batch size, OneCycle, ASHA),
on the quickstart (digits) and on an image folder (Animal-MNIST), over several seeds, the
three ways interleaved per seed. For each: the best member's (trial's) test accuracy, the
epochs trained and the wall time.

Then each seed's PBT schedule replayed alone from scratch (`analysis schedule` -> `sweep
train`, trainer epoch_values) against the default's best configuration retrained alone, both
with a new training seed: whether the found schedule carries over without its population.

Ends with `ratio=<median over seeds and problems of PBT's best test accuracy / the default's>`.

    pip install animal-mnist --no-deps    # the image folder (benchmarks/tools/image_folder.py)
    python benchmarks/pbt.py [--problems quickstart animal] [--seeds 3] [--trials 8] [--epochs 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE / "tools"))

from image_folder import write_folder  # noqa: E402

from sweeps.engine.driver import run_sweep  # noqa: E402
from sweeps.planner import make_plan  # noqa: E402
from sweeps.presets import load_preset  # noqa: E402
from sweeps.runfolder.run import load_run  # noqa: E402
from sweeps.runfolder.schedule import found_schedule  # noqa: E402
from trainer.config import apply_overrides  # noqa: E402
from trainer.loop import train  # noqa: E402

WAYS = ["default", "pbt", "pb2"]
POPULATION_SEARCH = {"lr": {"loguniform": [1.0e-3, 0.5]}, "weight_decay": {"loguniform": [1.0e-5, 1.0e-2]}}


def preset_file(problem: str, way: str, folder: Path, trials: int, epochs: int, interval: int) -> Path:
    """The quickstart preset (or its image-folder twin) as `way` sweeps it."""
    data = yaml.safe_load(Path(load_preset("quickstart").path).read_text())
    data["train"].update(epochs=epochs, device="cpu")
    if problem != "quickstart":
        data["train"].update(dataset="imagefolder", image_size=28, width=16)
    data["sweep"]["trials"] = trials
    if way != "default":
        data["train"].update(scheduler="constant")
        data["search"] = POPULATION_SEARCH
        data["initial"] = {"lr": data["initial"]["lr"], "weight_decay": data["initial"]["weight_decay"]}
        data["sweep"].update(scheduler=way, perturbation_interval=interval, quantile=0.25)
        data["sweep"].pop("concurrency", None)
    path = folder / f"{problem}-{way}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def sweep(path: Path, storage: str, name: str, seed: int, data_dir: str | None) -> dict:
    plan = make_plan(load_preset(str(path)), overrides=[], samples=None, concurrency=None, gpus=None, cpus=None,
                     storage=storage, name=name, seed=seed, data_dir=data_dir)
    started = time.perf_counter()
    run_sweep(plan, local=True)
    wall = time.perf_counter() - started
    run = load_run(plan.path)
    best = run.best()
    assert best is not None
    return {"run": run, "wall_s": wall, "test": float(best["test_acc"]), "val": float(best[run.metric]),
            "epochs": int(run.trials["epochs_trained"].sum()), "best": best}


def retrain(path: Path, sets: dict, seed: int, data_dir: str | None) -> float:
    """Test accuracy of `sets` trained alone on `path`'s training config, training seed `seed`."""
    items = [f"{k}={v}" for k, v in {**sets, "seed": seed}.items()]
    if data_dir:
        items.append(f"data_dir={data_dir}")
    return float(train(apply_overrides(load_preset(str(path)).train, items))["test_acc"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=["quickstart", "animal"], choices=["quickstart", "animal",
                                                                                              "digits-folder"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=8, help="trials of the default = members of a population")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--interval", type=int, default=2, help="PBT/PB2: epochs between decisions")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        for problem in args.problems:
            data_dir = None
            if problem != "quickstart":
                data_dir = str(write_folder("animal" if problem == "animal" else "digits", work / problem))
            for seed in range(args.seeds):
                found = {}
                for way in WAYS:
                    path = preset_file(problem, way, work, args.trials, args.epochs, args.interval)
                    result = sweep(path, str(work / "runs"), f"{problem}-{way}-{seed}", seed, data_dir)
                    found[way] = (path, result)
                    figures = {k: result[k] for k in ("test", "val", "epochs", "wall_s")}
                    rows.append({"problem": problem, "way": way, "seed": seed, **figures})
                    print(f"{problem:<11} seed {seed} {way:<8} best test {result['test']:.4f} (val {result['val']:.4f})"
                          f" {result['epochs']:>4} epochs {result['wall_s']:7.1f} s", flush=True)
                pbt_path, pbt = found["pbt"]
                schedule = found_schedule(pbt["run"])
                default_path, default = found["default"]
                fixed = {k: default["best"][k] for k in default["run"].plan.search}
                replay = retrain(pbt_path, dict(schedule.train_set()), seed + 100, data_dir)
                alone = retrain(default_path, fixed, seed + 100, data_dir)
                rows[-1]["replay"], rows[-1]["fixed"] = replay, alone
                print(f"{problem:<11} seed {seed} retrained alone: PBT schedule {replay:.4f}, the default's best "
                      f"configuration {alone:.4f}", flush=True)
    print()
    print(f"{'problem':<15}{'way':<9}{'median best test':>17}{'min':>8}{'max':>8}{'epochs':>8}{'median wall s':>15}")
    ratios = []
    for problem in args.problems:
        for way in WAYS:
            mine = [r for r in rows if r["problem"] == problem and r["way"] == way]
            tests = [r["test"] for r in mine]
            print(f"{problem:<15}{way:<9}{statistics.median(tests):>17.4f}{min(tests):>8.4f}{max(tests):>8.4f}"
                  f"{statistics.median(r['epochs'] for r in mine):>8.0f}"
                  f"{statistics.median(r['wall_s'] for r in mine):>15.1f}")
        by_seed = {r["seed"]: r for r in rows if r["problem"] == problem and r["way"] == "default"}
        ratios += [r["test"] / by_seed[r["seed"]]["test"] for r in rows if r["problem"] == problem
                   and r["way"] == "pbt"]
        replays = [r for r in rows if r["problem"] == problem and "replay" in r]
        print(f"{problem:<15}retrained alone (median): PBT schedule "
              f"{statistics.median(r['replay'] for r in replays):.4f}, default's best configuration "
              f"{statistics.median(r['fixed'] for r in replays):.4f}")
    print(f"ratio={statistics.median(ratios):.4f}")


if __name__ == "__main__":
    main()
