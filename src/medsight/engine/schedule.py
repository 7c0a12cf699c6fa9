"""The training budget, the learning-rate schedules and the default optimisers.

Schedules are functions of *progress* in [0, 1], not of an epoch count, so that the same poly or
cosine curve anneals properly whatever limits the run: with ``T`` total iterations and a wall-clock
budget ``B`` the engine sets ``progress = max(step / T, elapsed / B)`` before every scheduler step.

Example::

    def configure_optimizers(self, model):
        return build_optimizer(model, self.train_config)   # AdamW or SGD + a ProgressLR
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from medsight.config import TrainConfig
from medsight.engine.contract import OptimizerSpec
from medsight.errors import ConfigError

DEFAULT_EPOCHS = 50  # used when neither epochs, max_iterations nor time_budget is set
POLY_EXPONENT = 0.9  # nnU-Net's poly schedule
SGD_MOMENTUM = 0.99  # nnU-Net's SGD: momentum 0.99, Nesterov


def lr_factor(schedule: str, progress: float, exponent: float = POLY_EXPONENT) -> float:
    """The multiplier of the base learning rate at ``progress`` (clipped to [0, 1]).

    >>> lr_factor("poly", 0.0), lr_factor("cosine", 0.5), lr_factor("constant", 0.9)
    (1.0, 0.5, 1.0)
    """
    p = min(max(float(progress), 0.0), 1.0)
    if schedule == "poly":
        return (1.0 - p) ** exponent
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    if schedule == "constant":
        return 1.0
    raise ConfigError(f"train.schedule: expected 'poly', 'cosine' or 'constant', got {schedule!r}")


class ProgressLR(torch.optim.lr_scheduler.LRScheduler):
    """An LR scheduler driven by run progress; the engine calls ``set_progress`` before ``step``."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, schedule: str, exponent: float = POLY_EXPONENT
    ) -> None:
        lr_factor(schedule, 0.0, exponent)  # validate the name early
        self.schedule = schedule
        self.exponent = exponent
        self.progress = 0.0
        super().__init__(optimizer)

    def set_progress(self, progress: float) -> None:
        """Set the run progress in [0, 1] that the next ``step()`` turns into learning rates."""
        self.progress = min(max(float(progress), 0.0), 1.0)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        factor = lr_factor(self.schedule, self.progress, self.exponent)
        return [base * factor for base in self.base_lrs]


def build_optimizer(model: nn.Module, config: TrainConfig, name: str = "main") -> list[OptimizerSpec]:
    """AdamW, or SGD (momentum 0.99, Nesterov), over the trainable parameters, with a ProgressLR and
    ``train.grad_clip``: the one optimiser of a task with one loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"{type(model).__name__}: build_optimizer found no trainable parameters")
    lr = config.resolved_lr()
    if config.optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(
            params, lr=lr, momentum=SGD_MOMENTUM, nesterov=True, weight_decay=config.weight_decay
        )
    return [OptimizerSpec(opt, [ProgressLR(opt, config.schedule)], name=name, clip_norm=config.grad_clip)]


@dataclass(frozen=True)
class Budget:
    """When a run stops: after ``epochs``, ``max_iterations`` or ``time_budget`` seconds, first wins."""

    epochs: int | None
    iterations_per_epoch: int
    max_iterations: int | None = None
    time_budget: float | None = None

    @classmethod
    def from_config(cls, config: TrainConfig) -> Budget:
        """Read the limits; with none set the run lasts :data:`DEFAULT_EPOCHS` epochs."""
        if config.iterations_per_epoch < 1:
            raise ConfigError(f"train.iterations_per_epoch: expected >= 1, got {config.iterations_per_epoch}")
        for name in ("epochs", "max_iterations"):
            value = getattr(config, name)
            if value is not None and value < 1:
                raise ConfigError(f"train.{name}: expected >= 1 or null, got {value}")
        limits = (config.epochs, config.max_iterations, config.time_budget_seconds)
        epochs = DEFAULT_EPOCHS if all(v is None for v in limits) else config.epochs
        return cls(epochs, config.iterations_per_epoch, config.max_iterations, config.time_budget_seconds)

    @property
    def total_iterations(self) -> int | None:
        """The iteration count the run ends at, when an epoch or iteration limit is set."""
        caps = [c for c in (self.max_iterations,) if c is not None]
        if self.epochs is not None:
            caps.append(self.epochs * self.iterations_per_epoch)
        return min(caps) if caps else None

    def progress(self, step: int, elapsed: float) -> float:
        """``max(step / total_iterations, elapsed / time_budget)``, clipped to [0, 1]."""
        parts = [0.0]
        if self.total_iterations:
            parts.append(step / self.total_iterations)
        if self.time_budget:
            parts.append(elapsed / self.time_budget)
        return min(max(parts), 1.0)

    def iterations_in_epoch(self, step: int) -> int:
        """Iterations the next epoch runs: a full epoch, or what is left of ``total_iterations``."""
        total = self.total_iterations
        return (
            self.iterations_per_epoch
            if total is None
            else max(0, min(self.iterations_per_epoch, total - step))
        )

    def stop_reason(self, epoch: int, step: int, elapsed: float, epoch_seconds: float = 0.0) -> str | None:
        """Why the run must stop before another epoch, or None.

        The time budget stops the run when the next epoch (expected to last ``epoch_seconds``) would
        end more than half an epoch past the budget, so the overshoot or shortfall is at most half an
        epoch.
        """
        if self.epochs is not None and epoch >= self.epochs:
            return "epochs"
        if self.max_iterations is not None and step >= self.max_iterations:
            return "max_iterations"
        if self.time_budget is not None and elapsed + 0.5 * epoch_seconds >= self.time_budget:
            return "time_budget"
        return None

    def estimated_total_iterations(self, step: int, elapsed: float) -> int | None:
        """Iterations expected by the end (for a progress bar), extrapolating speed under a time budget."""
        total = self.total_iterations
        if self.time_budget and step and elapsed > 0:
            by_time = int(step * self.time_budget / elapsed)
            total = by_time if total is None else min(total, by_time)
        return total
