"""Toy tasks for the engine tests: linear regression on random batches drawn lazily from torch's RNG."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from medsight.config import TrainConfig
from medsight.engine import build_optimizer
from medsight.engine.contract import OptimizerSpec, StepContext, StepOutput

TRUE_W = torch.arange(1.0, 9.0).reshape(8, 1) / 4


class RandomBatches:
    """An endless, re-iterable stream; each batch is drawn from the global RNG when it is requested."""

    def __init__(self, batch: int = 16, delay: float = 0.0) -> None:
        self.batch, self.delay = batch, delay

    def __iter__(self):
        while True:
            if self.delay:
                time.sleep(self.delay)
            x = torch.randn(self.batch, 8)
            yield x, x @ TRUE_W + 0.01 * torch.randn(self.batch, 1)


def val_batches(n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(123)
    out = []
    for _ in range(n):
        x = torch.randn(32, 8, generator=g)
        out.append((x, x @ TRUE_W))
    return out


class LinearTask:
    """Regression with MSE; the monitor is the validation MSE (lower is better)."""

    name = "toy"
    monitor = "val_mse"
    monitor_mode = "min"

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def build_model(self) -> nn.Module:
        return nn.Linear(8, 1)

    def configure_optimizers(self, model: nn.Module) -> list[OptimizerSpec] | None:
        return build_optimizer(model, self.config)

    def training_step(self, model: nn.Module, batch: Any, step: StepContext) -> StepOutput:
        x, y = batch
        with step.autocast():
            loss = nn.functional.mse_loss(model(x), y)
        return StepOutput({"main": loss}, {"abs_err": float((model(x) - y).detach().abs().mean())})

    def validation_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        x, y = batch
        return {"se": ((model(x) - y) ** 2).sum(), "n": torch.tensor(float(y.numel()))}

    def aggregate_validation(self, outputs: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        se = sum(float(o["se"]) for o in outputs)
        n = sum(float(o["n"]) for o in outputs)
        return {"val_mse": se / n}


class FlatMetricTask(LinearTask):
    """Its validation metric never improves after the first round (for early stopping)."""

    monitor = "val_const"
    monitor_mode = "max"

    def aggregate_validation(self, outputs: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        return {"val_const": 1.0}


class MeanModel(nn.Module):
    """Estimates the mean of the targets; fitted without gradients."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(1))
        self.register_buffer("count", torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mean.expand(x.shape[0], 1)


class SelfFittingTask(LinearTask):
    """configure_optimizers returns None: training_step updates the model itself (no losses)."""

    name = "toy-self"

    def build_model(self) -> nn.Module:
        return MeanModel()

    def configure_optimizers(self, model: nn.Module) -> list[OptimizerSpec] | None:
        return None

    def training_step(self, model: nn.Module, batch: Any, step: StepContext) -> StepOutput:
        _, y = batch
        with torch.no_grad():
            total = model.mean * model.count + (y + 3.0).sum()
            model.count += y.numel()
            model.mean.copy_(total / model.count)
        return StepOutput({}, {"loss": float(((y + 3.0 - model.mean) ** 2).mean())})

    def validation_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        return {"err": (model.mean - 3.0).abs()}

    def aggregate_validation(self, outputs: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        return {"val_mse": float(outputs[0]["err"])}
