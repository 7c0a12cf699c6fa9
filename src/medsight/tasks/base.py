"""The Task contract: what every task family implements; the engine owns everything else."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from medsight.metrics.table import MetricTable


@dataclass
class Optimizers:
    """What ``configure_optimizers`` returns: optimisers and their per-iteration LR schedulers."""

    optimizers: list[torch.optim.Optimizer]
    schedulers: list[torch.optim.lr_scheduler.LRScheduler] = field(default_factory=list)


@dataclass
class StepContext:
    """What a training step may need from the engine."""

    epoch: int
    step: int  # global iteration, 0-based
    device: torch.device
    optimizers: list[torch.optim.Optimizer]
    autocast: Callable[[], Any]  # a context-manager factory (bf16 on CUDA, a no-op on CPU)
    rank: int = 0
    world_size: int = 1
    progress: float = 0.0  # fraction of the training budget used, in [0, 1]


@dataclass
class StepOutput:
    """A training step's result. ``loss`` None means the task already stepped its optimisers."""

    loss: torch.Tensor | None
    logs: dict[str, float] = field(default_factory=dict)


@dataclass
class Prediction:
    """A full-size prediction in the input's original geometry."""

    case_id: str
    output: Any  # e.g. a medsight.io.Image label map, or class probabilities
    probabilities: Any | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Task(Protocol):
    """Implemented by each task family (segment, classify, ...)."""

    name: str
    monitor: str  # the validation metric that selects the best checkpoint, e.g. "val_dice"
    monitor_mode: str  # "max" or "min"

    def build_model(self, plan: Any) -> nn.Module: ...

    def configure_optimizers(self, model: nn.Module) -> Optimizers | None: ...

    def training_step(self, model: nn.Module, batch: Any, step: StepContext) -> StepOutput: ...

    def validation_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]: ...

    def aggregate_validation(self, outputs: list[dict[str, torch.Tensor]]) -> dict[str, float]: ...

    def predict(self, model: nn.Module, sample: Any) -> Prediction: ...

    def evaluate(self, predictions: list[Prediction], references: list[Any]) -> MetricTable: ...
