import math

import pytest
import torch

from trainer.config import ConfigError
from trainer.optim import build_optimizer, build_schedule, l1_penalty


def one_step(name, w0=1.0, grad=0.5, lr=0.1, wd=0.0, momentum=0.9):
    w = torch.nn.Parameter(torch.tensor([w0]))
    opt = build_optimizer(name, [w], lr=lr, weight_decay=wd, momentum=momentum)
    w.grad = torch.tensor([grad])
    opt.step()
    return w.item()


def test_first_steps_follow_each_optimizers_formula():
    assert one_step("sgd", wd=0.01) == pytest.approx(1.0 - 0.1 * (0.5 + 0.01 * 1.0))
    assert one_step("adam") == pytest.approx(1.0 - 0.1, rel=1e-4)  # first Adam step: lr * sign(g)
    assert one_step("adamw", wd=0.1) == pytest.approx(1.0 * (1 - 0.1 * 0.1) - 0.1, rel=1e-4)  # decoupled decay
    assert one_step("radam") == pytest.approx(1.0 - 0.1 * 0.5, rel=1e-4)  # RAdam warm-up: plain momentum step
    with pytest.raises(ConfigError, match="optimizer='lion' is not known"):
        one_step("lion")


def test_sgd_momentum_accumulates():
    w = torch.nn.Parameter(torch.tensor([0.0]))
    opt = build_optimizer("sgd", [w], lr=1.0, weight_decay=0.0, momentum=0.9)
    for _ in range(2):
        w.grad = torch.tensor([1.0])
        opt.step()
    assert w.item() == pytest.approx(-(1.0 + 1.9))


def lrs(name, steps, epochs=4, steps_per_epoch=10, per="batch", metrics=None, **kw):
    w = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer("sgd", [w], lr=kw.get("lr", 0.1), weight_decay=0, momentum=0.9)
    sched = build_schedule(name, opt, lr=kw.pop("lr", 0.1), epochs=epochs, steps_per_epoch=steps_per_epoch, **kw)
    out = []
    for e in range(epochs):
        for _ in range(steps_per_epoch):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.after_batch()
        sched.after_epoch(metrics[e] if metrics else 1.0)
    return out


def test_onecycle_steps_per_batch_from_max_over_25_up_to_max_and_down():
    values = lrs("onecycle", 40, pct_start=0.25)
    assert values[0] == pytest.approx(0.1 / 25)
    assert max(values) == pytest.approx(0.1, rel=1e-3)
    assert values.index(max(values)) == pytest.approx(10, abs=1)  # 25% of 40 steps
    assert values[-1] < 0.1 / 25 / 100


def test_cyclic_triangular_between_min_and_max_with_the_closed_form():
    values = lrs("cyclic", 40, lr=3e-3, min_lr=5e-8, cycle_epochs=1.0)  # up 5 steps, down 5 steps
    for t, lr in enumerate(values):
        cycle = math.floor(1 + t / 10)
        x = abs(t / 5 - 2 * cycle + 1)
        assert lr == pytest.approx(5e-8 + (3e-3 - 5e-8) * max(0, 1 - x))


def test_step_decays_per_epoch_not_per_batch():
    values = lrs("step", 40, epochs=4, step_size=2, gamma=0.1)
    per_epoch = values[::10]
    assert per_epoch == pytest.approx([0.1, 0.1, 0.01, 0.01])
    assert len(set(values[:10])) == 1


def test_plateau_decays_after_patience_epochs_without_improvement():
    values = lrs("plateau", 60, epochs=6, plateau_patience=1, gamma=0.5, metrics=[1.0, 0.9, 0.9, 0.9, 0.9, 0.9])
    assert values[::10] == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05])


def test_cosine_with_warmup():
    values = lrs("cosine", 60, epochs=6, warmup_epochs=2, min_lr=0.0)[::10]
    expected = [0.1 * 1 / 3, 0.1 * 2 / 3] + [0.1 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert values == pytest.approx(expected)


def test_constant_and_unknown():
    assert set(lrs("constant", 40)) == {0.1}
    with pytest.raises(ConfigError, match="scheduler='poly' is not known"):
        lrs("poly", 40)


def test_l1_penalty_sums_absolute_trainable_weights():
    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0]]))
        layer.bias.fill_(-0.5)
    assert l1_penalty(layer).item() == pytest.approx(3.5)
    layer.bias.requires_grad_(False)
    assert l1_penalty(layer).item() == pytest.approx(3.0)
