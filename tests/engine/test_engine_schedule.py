"""Budgets, learning-rate schedules and the default optimisers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medsight.config import TrainConfig
from medsight.engine.schedule import DEFAULT_EPOCHS, Budget, ProgressLR, build_optimizer, lr_factor
from medsight.errors import ConfigError


def test_lr_factor_shapes() -> None:
    ps = [i / 10 for i in range(11)]
    poly = [lr_factor("poly", p) for p in ps]
    cosine = [lr_factor("cosine", p) for p in ps]
    assert poly[0] == 1.0 and poly[-1] == 0.0
    assert poly[5] == pytest.approx(0.5**0.9)
    assert cosine[0] == 1.0 and cosine[5] == pytest.approx(0.5) and cosine[-1] == pytest.approx(0.0)
    assert cosine[2] == pytest.approx(0.5 * (1 + math.cos(0.2 * math.pi)))
    assert all(a > b for a, b in zip(poly, poly[1:], strict=False))
    assert all(a > b for a, b in zip(cosine, cosine[1:], strict=False))
    assert all(lr_factor("constant", p) == 1.0 for p in ps)
    assert lr_factor("poly", 1.7) == 0.0 and lr_factor("poly", -1) == 1.0  # clipped
    with pytest.raises(ConfigError, match="train.schedule"):
        lr_factor("step", 0.5)


def test_progress_lr_follows_progress_and_round_trips() -> None:
    opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1)
    sched = ProgressLR(opt, "poly")
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    sched.set_progress(0.5)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**0.9)
    state = sched.state_dict()
    other = ProgressLR(torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1), "poly")
    other.load_state_dict(state)
    assert other.progress == 0.5 and other.get_last_lr() == sched.get_last_lr()


@pytest.mark.parametrize(("name", "cls"), [("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)])
def test_build_optimizer(name: str, cls: type) -> None:
    model = nn.Linear(3, 1)
    model.bias.requires_grad_(False)
    (spec,) = build_optimizer(model, TrainConfig(optimizer=name, schedule="cosine"))
    opt = spec.optimizer
    assert isinstance(opt, cls) and isinstance(spec.schedulers[0], ProgressLR)
    assert opt.param_groups[0]["lr"] == TrainConfig(optimizer=name).resolved_lr()
    assert [p.shape for p in opt.param_groups[0]["params"]] == [model.weight.shape]
    if name == "sgd":
        assert opt.param_groups[0]["momentum"] == 0.99 and opt.param_groups[0]["nesterov"]
    with pytest.raises(ConfigError, match="no trainable parameters"):
        build_optimizer(nn.Linear(2, 1).requires_grad_(False), TrainConfig())


def test_budget_defaults_and_limits() -> None:
    assert Budget.from_config(TrainConfig()).epochs == DEFAULT_EPOCHS
    only_time = Budget.from_config(TrainConfig(time_budget="2m"))
    assert only_time.epochs is None and only_time.total_iterations is None and only_time.time_budget == 120
    b = Budget.from_config(TrainConfig(epochs=4, iterations_per_epoch=10, max_iterations=25))
    assert b.total_iterations == 25
    assert [b.iterations_in_epoch(s) for s in (0, 10, 20, 25)] == [10, 10, 5, 0]
    assert b.stop_reason(2, 20, 0.0) is None
    assert b.stop_reason(2, 25, 0.0) == "max_iterations"
    assert b.stop_reason(4, 25, 0.0) == "epochs"
    with pytest.raises(ConfigError, match="iterations_per_epoch"):
        Budget.from_config(TrainConfig(iterations_per_epoch=0))


def test_budget_progress_takes_the_larger_of_iterations_and_time() -> None:
    b = Budget(epochs=10, iterations_per_epoch=10, time_budget=100.0)
    assert b.progress(50, 10.0) == pytest.approx(0.5)
    assert b.progress(10, 80.0) == pytest.approx(0.8)
    assert b.progress(10, 500.0) == 1.0
    timed = Budget(epochs=None, iterations_per_epoch=10, time_budget=100.0)
    assert timed.progress(10_000, 25.0) == pytest.approx(0.25)
    # stops when the next epoch would end more than half an epoch past the budget
    assert timed.stop_reason(3, 30, 90.0, epoch_seconds=10.0) is None
    assert timed.stop_reason(3, 30, 95.0, epoch_seconds=10.0) == "time_budget"
    assert timed.estimated_total_iterations(30, 30.0) == 100
