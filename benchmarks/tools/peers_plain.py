"""The two sweeps a user would write instead of resweep, as their docs show them, for
`benchmarks/peers.py`. This file must not import resweep (trainer/, sweeps/, analysis/): it
is what a user writes from scratch, and it checks at the end that it did not.

- `tune`: a Ray Tune script as Ray's docs show it: a function trainable, torchvision's
  ImageFolder with per-image transforms and a DataLoader inside each trial, OptunaSearch
  under a ConcurrencyLimiter, ASHAScheduler.
- `optuna`: an Optuna study alone: TPESampler, SuccessiveHalvingPruner, `n_jobs`.
- `check`: the model's parameter shapes and its output for a given input and weights, and
  the split's file lists, for peers.py to compare with resweep's before measuring.

Each prints one JSON line: per trial its parameters, validation accuracy per epoch, seconds
per epoch and (trained to the end) its test accuracy.

    python benchmarks/tools/peers_plain.py tune|optuna|check --setup SETUP.json --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

# --- the model: ResNet9 (conv-conv/pool-res-conv/pool-conv/pool-res, max pool, linear)
# Written again on purpose (a user's script has no trainer/models.py); peers.py checks it
# gives resweep's output for the same weights before it measures anything.

def conv_block(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


class ResNet9(nn.Module):
    def __init__(self, num_classes: int, width: int):
        super().__init__()
        w = width
        self.stem = conv_block(3, w)
        self.stages = nn.ModuleList([
            nn.Sequential(conv_block(w, 2 * w, pool=True),
                          Residual(nn.Sequential(conv_block(2 * w, 2 * w), conv_block(2 * w, 2 * w)))),
            conv_block(2 * w, 4 * w, pool=True),
            conv_block(4 * w, 8 * w, pool=True),
            Residual(nn.Sequential(conv_block(8 * w, 8 * w), conv_block(8 * w, 8 * w))),
        ])
        self.pool = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(8 * w, num_classes))

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(self.pool(x))


# --- data: ImageFolder, per-image transforms, a DataLoader per trial

def datasets(root: str, size: int):
    from torchvision import datasets as D
    from torchvision import transforms as T

    plain = D.ImageFolder(f"{root}/train", transform=T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor()]))
    sample = torch.stack([plain[i][0] for i in range(0, len(plain), max(1, len(plain) // 1000))])
    mean, std = sample.mean(dim=(0, 2, 3)).tolist(), sample.std(dim=(0, 2, 3)).clamp(min=1e-3).tolist()
    # the "light" augmentation: shifts of up to 1/8 of the side, rotations of up to 10 degrees
    train = T.Compose([T.Resize(size), T.CenterCrop(size),
                       T.RandomCrop(size, padding=round(size / 8), fill=tuple(int(255 * m) for m in mean)),
                       T.RandomRotation(10), T.ToTensor(), T.Normalize(mean, std)])
    test = T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), T.Normalize(mean, std)])
    return (D.ImageFolder(f"{root}/train", transform=train), D.ImageFolder(f"{root}/val", transform=test),
            D.ImageFolder(f"{root}/test", transform=test))


def train_one_epoch(model, loader, optimizer, scheduler):
    model.train()
    for images, labels in loader:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        scheduler.step()


@torch.no_grad()
def evaluate(model, loader) -> float:
    model.eval()
    correct = total = 0
    for images, labels in loader:
        correct += int((model(images).argmax(1) == labels).sum())
        total += len(labels)
    return correct / total


class Run:
    """One configuration's training, an epoch at a time."""

    def __init__(self, setup: dict, params: dict, seed: int):
        torch.manual_seed(seed)
        train_set, val_set, self.test_set = datasets(setup["data"], setup["image_size"])
        self.train_loader = torch.utils.data.DataLoader(train_set, batch_size=int(params["batch_size"]),
                                                        shuffle=True, num_workers=0)
        self.val_loader = torch.utils.data.DataLoader(val_set, batch_size=256)
        self.model = ResNet9(len(train_set.classes), setup["width"])
        if params["optimizer"] == "sgd":
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=params["lr"], momentum=0.9,
                                             weight_decay=params["weight_decay"])
        else:
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=params["lr"],
                                              weight_decay=params["weight_decay"])
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=params["lr"], epochs=setup["epochs"], steps_per_epoch=len(self.train_loader),
            pct_start=0.25, cycle_momentum=False)

    def epoch(self) -> float:
        train_one_epoch(self.model, self.train_loader, self.optimizer, self.scheduler)
        return evaluate(self.model, self.val_loader)

    def test(self) -> float:
        return evaluate(self.model, torch.utils.data.DataLoader(self.test_set, batch_size=256))


def space_tune(search: dict):
    from ray import tune

    out = {}
    for key, spec in search.items():
        kind, args = next(iter(spec.items()))
        out[key] = tune.choice(args) if kind == "choice" else (
            tune.loguniform(*args) if kind == "loguniform" else tune.uniform(*args))
    return out


def suggest(trial, search: dict) -> dict:
    out = {}
    for key, spec in search.items():
        kind, args = next(iter(spec.items()))
        out[key] = trial.suggest_categorical(key, args) if kind == "choice" else (
            trial.suggest_float(key, *args, log=kind == "loguniform"))
    return out


# --- the Ray Tune script

def sweep_tune(setup: dict, seed: int) -> list[dict]:
    import tempfile

    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    def train_model(config):
        torch.set_num_threads(1)
        run = Run(setup, config, seed)
        for epoch in range(1, setup["epochs"] + 1):
            started = time.perf_counter()
            val_acc = run.epoch()
            metrics = {"val_acc": val_acc, "epoch_s": time.perf_counter() - started}
            if epoch == setup["epochs"]:
                metrics["test_acc"] = run.test()
            tune.report(metrics)

    # the trial imports this file as a module (not __main__), as a script split in two files would
    ray.init(num_cpus=setup["concurrency"] * setup["cpus"], include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parent)}})
    searcher = OptunaSearch(points_to_evaluate=[setup["initial"]], seed=seed)
    scheduler = ASHAScheduler(max_t=setup["epochs"], grace_period=setup["grace_period"],
                              reduction_factor=setup["reduction_factor"])
    with tempfile.TemporaryDirectory() as storage:
        tuner = tune.Tuner(
            tune.with_resources(train_model, {"cpu": setup["cpus"]}),
            param_space=space_tune(setup["search"]),
            tune_config=tune.TuneConfig(metric="val_acc", mode="max", num_samples=setup["trials"],
                                        search_alg=ConcurrencyLimiter(searcher, max_concurrent=setup["concurrency"]),
                                        scheduler=scheduler),
            run_config=tune.RunConfig(storage_path=storage, verbose=0))
        results = tuner.fit()
        trials = []
        for result in results:
            history = result.metrics_dataframe
            trials.append({"params": {k: result.config[k] for k in setup["search"]},
                           "values": history["val_acc"].tolist(), "seconds": history["epoch_s"].tolist(),
                           "test_acc": float(history["test_acc"].iloc[-1]) if "test_acc" in history
                           and history["test_acc"].notna().iloc[-1] else None})
    ray.shutdown()
    return trials


# --- the Optuna study alone

def sweep_optuna(setup: dict, seed: int) -> list[dict]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(setup["cpus"])
    trials: list[dict] = []

    def objective(trial):
        params = suggest(trial, setup["search"])
        run = Run(setup, params, seed)
        record = {"params": params, "values": [], "seconds": [], "test_acc": None}
        trials.append(record)
        for epoch in range(1, setup["epochs"] + 1):
            started = time.perf_counter()
            val_acc = run.epoch()
            record["values"].append(val_acc)
            record["seconds"].append(time.perf_counter() - started)
            trial.report(val_acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        record["test_acc"] = run.test()
        return val_acc

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.SuccessiveHalvingPruner(
                                    min_resource=setup["grace_period"],
                                    reduction_factor=setup["reduction_factor"]))
    study.enqueue_trial(setup["initial"])
    study.optimize(objective, n_trials=setup["trials"], n_jobs=setup["concurrency"])
    return trials


def check(setup: dict, weights: str) -> dict:
    """What peers.py compares with resweep's: the model and the splits."""
    model = ResNet9(len(datasets(setup["data"], setup["image_size"])[0].classes), setup["width"])
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        out = model(torch.randn(4, 3, setup["image_size"], setup["image_size"])).tolist()
    splits = {}
    for name, ds in zip(("train", "val", "test"), datasets(setup["data"], setup["image_size"])):
        splits[name] = sorted((str(Path(p).relative_to(setup["data"])), label) for p, label in ds.samples)
    return {"shapes": shapes, "output": out, "splits": splits}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("way", choices=["tune", "optuna", "check"])
    parser.add_argument("--setup", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", default="")
    args = parser.parse_args()
    setup = json.loads(Path(args.setup).read_text())
    started = time.perf_counter()
    from peers_plain import check, sweep_optuna, sweep_tune  # by module name, so Ray pickles by reference
    if args.way == "check":
        out = check(setup, args.weights)
    else:
        trials = sweep_tune(setup, args.seed) if args.way == "tune" else sweep_optuna(setup, args.seed)
        out = {"trials": trials, "inner_wall_s": time.perf_counter() - started}
    mine = sorted(m for m in sys.modules if m.split(".")[0] in ("trainer", "sweeps", "analysis"))
    if mine:
        raise SystemExit(f"the peers imported resweep: {mine}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
