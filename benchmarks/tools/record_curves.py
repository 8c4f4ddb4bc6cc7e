"""Record full learning curves for `sweep simulate`: N configurations of a preset's search
space, drawn at random (the preset's initial configuration first), each trained to its last
epoch once, with no early stopping and no Ray: the trainer alone, `--workers` processes of
one thread each. Writes the curves file that `sweep simulate --curves` and
`benchmarks/search_settings.py` read: per configuration its parameters, validation metric per
epoch, seconds per epoch and the test accuracy of the last epoch; for a preset of several objectives, each other
objective per epoch too (the model's cost, measured with the first epoch, at every epoch).

    python benchmarks/tools/record_curves.py quickstart --configs 256 --out benchmarks/data/quickstart_curves.json
    python benchmarks/tools/record_curves.py quickstart --configs 200 --data-dir DIR --set dataset=imagefolder ...

A killed recording keeps what it wrote: the file is rewritten after every configuration and
`--resume` goes on from it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

_DATA: dict = {}


def _train_one(job: tuple[int, dict, dict, str, list[str]]) -> dict:
    index, params, base, metric, others = job
    import torch

    from trainer.config import from_dict
    from trainer.datasets import data_key, load_data
    from trainer.loop import train
    from trainer.metrics import COST

    torch.set_num_threads(1)
    config = from_dict({**params, "seed": index}, base=from_dict(base))
    key = data_key(config)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = load_data(config)
    values, seconds = [], []
    objectives: dict[str, list[float]] = {name: [] for name in others}
    cost: dict[str, float] = {}  # the model's cost comes with the first epoch only: it holds for every epoch

    def report(metrics: dict, save) -> None:
        values.append(float(metrics[metric]))
        seconds.append(float(metrics["epoch_time_s"]))
        cost.update({k: float(metrics[k]) for k in COST if k in metrics})
        for name in others:
            objectives[name].append(float(metrics[name]) if name in metrics else cost[name])

    started = time.perf_counter()
    try:
        last = train(config, report=report, data=_DATA[key])
    except Exception as err:  # noqa: BLE001 - a diverged or failed configuration is recorded as such
        return {"index": index, "params": params, "values": values, "seconds": seconds, "test_acc": None,
                "objectives": objectives, "error": f"{type(err).__name__}: {err}"[:200]}
    return {"index": index, "params": params, "values": values, "seconds": seconds, "objectives": objectives,
            "test_acc": float(last["test_acc"]) if "test_acc" in last else None,
            "wall_s": time.perf_counter() - started}


def draw_configs(search: dict, initial: dict, count: int, seed: int) -> list[dict]:
    """`count` configurations: the initial configuration, then independent random draws."""
    import optuna

    from sweeps.search import optuna_distributions

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = optuna_distributions(search)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = [dict(initial)] if initial else []
    while len(configs) < count:
        trial = study.ask(distributions)
        configs.append(dict(trial.params))
        study.tell(trial, 0.0)
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset")
    parser.add_argument("--configs", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE on the preset")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--grace-period", type=int, default=None, help="the ASHA the simulation plays (preset's)")
    parser.add_argument("--reduction-factor", type=float, default=None)
    parser.add_argument("--concurrency", type=int, default=None)
    args = parser.parse_args()

    from sweeps.planner import make_plan
    from sweeps.presets import load_preset

    preset = load_preset(args.preset)
    plan = make_plan(preset, overrides=args.overrides, samples=None, concurrency=None, gpus=0, cpus=1,
                          seed=None, storage="/tmp", name="record",
                          data_dir=os.path.abspath(args.data_dir) if args.data_dir else None)
    search = {k: {p.kind: p.args} for k, p in preset.search.items()}
    out = Path(args.out)
    meta = {"preset": preset.name, "overrides": args.overrides, "metric": plan.metric, "mode": plan.mode,
            "max_epochs": plan.train["epochs"], "search": search, "initial": plan.initial,
            "grace_period": args.grace_period or plan.grace_period,
            "reduction_factor": args.reduction_factor or plan.reduction_factor,
            "concurrency": args.concurrency or preset.concurrency or 2, "trials": preset.trials,
            **({"objectives": plan.objectives} if plan.objectives else {}),
            "machine": f"{os.cpu_count()} CPU cores, 1 thread per configuration"}
    records: list[dict] = []
    if args.resume and out.exists():
        records = json.loads(out.read_text())["configs"]
    done = {r["index"] for r in records}
    configs = draw_configs(search, plan.initial, args.configs, args.seed)
    others = [name for name in plan.objectives if name != plan.metric]  # recorded per epoch beside the metric
    jobs = [(i, c, plan.train, plan.metric, others) for i, c in enumerate(configs) if i not in done]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for record in pool.imap_unordered(_train_one, jobs):
            records.append(record)
            records.sort(key=lambda r: r["index"])
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps({"meta": meta, "configs": records}))
            tmp.replace(out)
            last = record["values"][-1] if record["values"] else float("nan")
            print(f"[{len(records)}/{len(configs)}] {time.perf_counter() - started:.0f}s config {record['index']}: "
                  f"{plan.metric} {last:.4f} test {record['test_acc']}", flush=True)


if __name__ == "__main__":
    main()
