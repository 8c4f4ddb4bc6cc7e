"""ASHA replayed over recorded curves (sweeps/sim/asha.py) against cases worked out by hand, and
against Ray Tune's own ASHA bracket."""

import pytest

from sweeps.sim.asha import Curve, many_orders, replay, rungs

CURVES = [Curve([0.5, 0.6, 0.7, 0.8]), Curve([0.4, 0.7, 0.75, 0.9]), Curve([0.6, 0.65, 0.66, 0.67]),
          Curve([0.3, 0.5, 0.55, 0.6])]


def test_rungs_are_rays():
    assert rungs(1, 2, 4) == [1, 2, 4]
    assert rungs(1, 4, 8) == [1, 4]
    assert rungs(2, 3, 20) == [2, 6, 18]


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_small_case_worked_out_by_hand(concurrency):
    # grace 1, rf 2, 4 epochs: rungs at 1, 2 and 4, a trial goes on if at or above the median so far
    # A: records 0.5, 0.6, 0.8 (first at every rung), trains 4. B: 0.4 < 0.5 at rung 1: stopped after 1.
    # C: 0.6 >= median(0.5, 0.4), 0.65 >= 0.6, trains 4. D: 0.3 < median(0.5, 0.4, 0.6): stopped after 1.
    outcome = replay(CURVES, concurrency=concurrency, grace_period=1, reduction_factor=2)
    assert (outcome.epochs, outcome.fifo_epochs, outcome.stopped) == (10, 16, 2)
    assert outcome.best == 0.8 and outcome.fifo_best == 0.9  # B's 0.9 at epoch 4 is never reached
    assert outcome.share == pytest.approx(10 / 16)


def test_min_mode_and_the_last_rung():
    losses = [Curve([1 - v for v in c.values]) for c in CURVES]
    outcome = replay(losses, concurrency=1, grace_period=1, reduction_factor=2, mode="min")
    assert outcome.epochs == 10 and outcome.best == pytest.approx(0.2)
    # with the grace period at the last epoch ASHA judges only at the end: FIFO's epochs
    assert replay(CURVES, 1, grace_period=4, reduction_factor=2).epochs == 16


def test_the_replay_decides_as_rays_bracket_does():
    from types import SimpleNamespace

    from ray.tune.schedulers.async_hyperband import _Bracket

    bracket = _Bracket(min_t=1, max_t=4, reduction_factor=2, s=0)
    trained = []
    for index, curve in enumerate(CURVES):  # one at a time: the replay's concurrency 1
        trial = SimpleNamespace(trial_id=str(index))
        for epoch, value in enumerate(curve.values, 1):
            if bracket.on_result(trial, epoch, value) == "STOP" or epoch == 4:
                trained.append(epoch)
                break
    assert sum(trained) == replay(CURVES, 1, 1, 2).epochs == 10


def test_many_orders_draws_and_shuffles():
    outcomes = many_orders(CURVES, trials=3, concurrency=1, grace_period=1, reduction_factor=2, orders=50, seed=1)
    assert len(outcomes) == 50 and all(o.fifo_epochs == 12 for o in outcomes)
    assert len({o.epochs for o in outcomes}) > 1, "orders change what ASHA stops"
    assert many_orders(CURVES, 3, 1, 1, 2, orders=5, seed=1)[0].epochs == outcomes[0].epochs, "seeded"
