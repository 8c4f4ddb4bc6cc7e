import math
import sys

import pytest
import torch
from conftest import tiny

from trainer import DivergedError, load_model, train
from trainer.checkpoint import load_checkpoint
from trainer.config import from_dict
from trainer.datasets import load_data
from trainer.loop import eval_loader, evaluate
from trainer.metrics import BY_NAME


def run(config, **kw):
    rows = []
    metrics = train(config, report=lambda m, save: rows.append(m), **kw)
    return metrics, rows


def test_importing_the_trainer_does_not_import_ray():
    import subprocess

    code = "import trainer, trainer.loop, trainer.data, sys; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_config_and_the_run_folder_writers_do_not_import_torch():
    """One atomic writer (trainer.files) serves checkpoints, the data cache and run folders,
    without making the run-folder code pay torch's import."""
    import subprocess

    code = "import trainer.config, trainer.files, sweeps.runfolder.storage, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_trial_actor_imports_neither_optuna_nor_the_search_wiring():
    """What a Ray trial actor imports is paid once per actor, on the sweep's critical path."""
    import subprocess

    code = ("import sweeps.engine.trial, sys; "
            "print(sorted(m for m in ('optuna', 'sweeps.engine.driver', 'sweeps.runfolder.run') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_epoch_reports_its_metrics_and_the_last_adds_the_test_split():
    metrics, rows = run(tiny(epochs=3, synthetic_classes=8))
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "val_top5", "epoch_lr", "images_per_s",
                "epoch_time_s"):
        assert all(key in r for r in rows), key
    unnamed = {key for r in rows for key in r} - set(BY_NAME)
    assert not unnamed, f"reported but not in trainer.metrics (a reader would drop them): {unnamed}"
    assert "test_acc" in rows[-1] and "test_acc" not in rows[0]
    assert metrics["test_acc"] == rows[-1]["test_acc"]
    assert 0 <= metrics["val_acc"] <= 1 and metrics["images_per_s"] > 0


def test_top5_only_with_more_than_five_classes():
    _, rows = run(tiny(epochs=1, synthetic_classes=4))
    assert "val_top5" not in rows[0]


def test_same_seed_same_numbers_on_cpu():
    a, _ = run(tiny(epochs=2))
    b, _ = run(tiny(epochs=2))
    assert a["val_loss"] == b["val_loss"] and a["train_loss"] == b["train_loss"]
    c, _ = run(tiny(epochs=2, seed=1))
    assert c["train_loss"] != a["train_loss"]


@pytest.mark.parametrize("scheduler", ["onecycle", "plateau"])
def test_resume_from_a_checkpoint_continues_exactly(tmp_path, scheduler):
    config = tiny(epochs=4, scheduler=scheduler, augment="cifar", l1=1e-5, label_smoothing=0.1, grad_clip=1.0)
    full, full_rows = run(config)
    # the checkpoint written when epoch 2 reports (save() writes the state as it is at that moment)
    train(config, report=lambda m, save: save(tmp_path) if m["epoch"] == 2 else None)
    state = load_checkpoint(tmp_path)
    assert state["epoch"] == 2 and state["config"]["scheduler"] == scheduler
    resumed, resumed_rows = run(config, resume_from=tmp_path)
    assert [r["epoch"] for r in resumed_rows] == [3, 4]
    for key in ("train_loss", "val_loss", "val_acc", "epoch_lr", "test_acc"):
        assert resumed[key] == full[key], key


def test_checkpoint_round_trip_is_a_flat_dict_loaded_weights_only(tmp_path):
    config = tiny(epochs=1)
    train(config, report=lambda m, save: save(tmp_path))
    path = tmp_path / "checkpoint.pt"
    raw = torch.load(path, weights_only=True)
    assert {"model", "optimizer", "scheduler", "epoch", "rng", "config", "history", "classes"} <= set(raw)
    model, loaded_config, _ = load_model(path)
    assert loaded_config.to_dict() == config.to_dict()
    # the weights are the trained ones: they score on the validation split exactly what training reported
    data = load_data(config)
    reported = raw["history"][-1]
    evaluated = evaluate(model, eval_loader(data.val, loaded_config, data), loaded_config, torch.device("cpu"))
    assert evaluated["val_acc"] == pytest.approx(reported["val_acc"], abs=1e-6)
    assert evaluated["val_loss"] == pytest.approx(reported["val_loss"], rel=1e-4)
    assert raw["classes"] == data.classes and len(data.classes) == 4
    assert not list(tmp_path.glob(".checkpoint.pt.*")), "no temporary file is left behind"


def test_two_phase_fine_tuning_trains_the_head_then_everything():
    config = tiny(model="resnet18", head="mlp", epochs=3, head_epochs=1, head_optimizer="adam", head_lr=0.01,
                  optimizer="radam", lr=3e-3, scheduler="cyclic", min_lr=5e-8, image_size=32)
    seen = []

    def report(metrics, save):
        seen.append((metrics["phase"], metrics["epoch_lr"]))

    import trainer.loop as loop
    from trainer import train as train_fn

    snapshots = []
    original = loop.train_one_epoch

    def spy(model, loader, phase, cfg, device):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        out = original(model, loader, phase, cfg, device)
        changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
        snapshots.append((phase.index, type(phase.optimizer).__name__, changed))
        return out

    loop.train_one_epoch = spy
    try:
        train_fn(config, report=report)
    finally:
        loop.train_one_epoch = original
    assert [s[0] for s in snapshots] == [0, 1, 1]
    assert snapshots[0][1] == "Adam" and snapshots[1][1] == "RAdam"
    assert snapshots[0][2] and all(n.startswith("head.") for n in snapshots[0][2])
    assert any(n.startswith("stages.") for n in snapshots[1][2])
    assert seen[0] == (0, 0.01) and seen[1][1] == pytest.approx(5e-8)  # cyclic starts at its floor


def test_a_diverging_run_stops_with_diverged_error():
    with pytest.raises(DivergedError) as err:
        train(tiny(epochs=3, lr=1e30, optimizer="sgd", momentum=0.0, scheduler="constant", weight_decay=0.0))
    assert "diverged" in str(err.value) and err.value.metrics["epoch"] == 1


def test_quickstart_reaches_97_percent_test_accuracy():
    from sweeps.presets import load_preset

    preset = load_preset("quickstart")
    config = preset.trial_config(preset.initial)
    metrics = train(from_dict({"device": "cpu"}, base=config))
    assert metrics["test_acc"] >= 0.97, metrics
    assert math.isfinite(metrics["test_loss"])


def test_the_first_epoch_reports_the_models_cost():
    """params, forward FLOPs per image, inference latency and throughput: once, with the first
    epoch (a trial ASHA stops after it has them); the FLOP count checked on a hand-counted case."""
    from torch import nn

    from trainer.cost import count_flops, measure_cost
    from trainer.models import build_model, count_parameters

    _, rows = run(tiny(epochs=2))
    assert {"params", "gflops", "latency_ms", "infer_img_s"} <= set(rows[0]) and "params" not in rows[1]
    model = build_model(tiny(), 4)
    assert rows[0]["params"] == count_parameters(model) and rows[0]["gflops"] > 0
    assert rows[0]["latency_ms"] > 0 and rows[0]["infer_img_s"] > 0
    # a linear layer 10 -> 5 is 50 multiply-adds: 100 FLOPs per image
    assert count_flops(nn.Linear(10, 5), torch.zeros(1, 10)) == 100
    # a 3x3 convolution 1 -> 2 channels, padded, on 4x4: 2 * 16 positions * 2 out * 9 taps = 576
    assert count_flops(nn.Conv2d(1, 2, 3, padding=1, bias=False), torch.zeros(1, 1, 4, 4)) == 576
    model.train()
    cost = measure_cost(model, tiny(), 3, torch.device("cpu"), budget_s=0.01)
    assert model.training and cost["params"] == count_parameters(model)
    # the same architecture again (a reused actor's next trial): the figures measured once, not re-timed
    assert measure_cost(build_model(tiny(), 4), tiny(), 3, torch.device("cpu"), budget_s=0.01) == cost
    wider = measure_cost(build_model(tiny(width=8), 4), tiny(width=8), 3, torch.device("cpu"), budget_s=0.01)
    assert wider["params"] > cost["params"]
