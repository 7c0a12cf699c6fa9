"""What the training engine needs from a task: the trainable half of the Task contract.

The engine imports nothing from ``medsight.tasks``: a task family's trainable object (built by its
:class:`medsight.tasks.contract.Task` for one plan) satisfies :class:`TrainableTask`, and the engine
trains it with one loop for every family.

One loss per optimiser: ``configure_optimizers`` returns one :class:`OptimizerSpec` per optimiser
(a GAN: the generator's and the discriminator's), and ``training_step`` returns
``StepOutput(losses={name: loss})``. The engine computes every loss's gradients with respect to its own
optimiser's parameters (all before any step, so one loss can depend on the other network), clips them
(``clip_norm``), skips that optimiser's step when its gradient norm is not finite, and steps. A task
that fits itself (an RBM with contrastive divergence) returns no optimisers and empty losses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

DEFAULT_GRAD_CLIP = 12.0  # max gradient norm, as in nnU-Net


@dataclass
class OptimizerSpec:
    """One optimiser, the schedulers stepped every iteration with it, and its own gradient clipping.

    ``name`` is the key of this optimiser's loss in ``StepOutput.losses``; ``clip_norm`` None: no
    clipping."""

    optimizer: torch.optim.Optimizer
    schedulers: list[torch.optim.lr_scheduler.LRScheduler] = field(default_factory=list)
    name: str = "main"
    clip_norm: float | None = DEFAULT_GRAD_CLIP

    @property
    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]


@dataclass
class StepContext:
    """What a training step may need from the engine."""

    epoch: int
    step: int  # global iteration, 0-based
    device: torch.device
    optimizers: list[OptimizerSpec]
    autocast: Callable[[], Any]  # a context-manager factory (bf16 on CUDA, a no-op on CPU)
    rank: int = 0
    world_size: int = 1
    progress: float = 0.0  # fraction of the training budget used, in [0, 1]


@dataclass
class StepOutput:
    """A training step's result: one loss per optimiser name (empty: the task stepped itself) + logs."""

    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    logs: dict[str, float] = field(default_factory=dict)

    @classmethod
    def single(cls, loss: torch.Tensor, **logs: float) -> StepOutput:
        """The usual case: one loss for the one optimiser ``main``, logged as ``loss``."""
        return cls({"main": loss}, {"loss": float(loss.detach()), **logs})


@dataclass
class Prediction:
    """A task's prediction of one case, in the input's original geometry."""

    case_id: str
    output: Any  # the task's output type: a medsight.io.Image label map, a class index or vector, ...
    probabilities: Any | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Batch = Any  # a task's batch: whatever its data stream yields (dict of tensors, Preprocessed ...)


@runtime_checkable
class TrainableTask(Protocol):
    """A task family bound to one plan and training config: what :class:`~medsight.engine.Trainer` trains."""

    name: str
    monitor: str  # the validation metric that selects the best checkpoint, e.g. "val_dice"
    monitor_mode: str  # "max" or "min"

    def build_model(self) -> nn.Module: ...

    def configure_optimizers(self, model: nn.Module) -> list[OptimizerSpec] | None: ...

    def training_step(self, model: nn.Module, batch: Batch, step: StepContext) -> StepOutput: ...

    def validation_step(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]: ...

    def aggregate_validation(self, outputs: list[dict[str, torch.Tensor]]) -> dict[str, float]: ...
