"""What the robustness verbs need from a task, the same for every task family.

A family's :class:`~medsight.tasks.contract.Task` returns

- an :class:`AttackAdapter` (``task.attack_adapter(run, split, max_cases)``) for ``medsight robustness``:
  the model, its :class:`~medsight.robustness.space.InputSpace`, the evaluated cases as normalised
  :class:`Batch` es with their targets, a differentiable ``forward``, the per-sample loss the attacks
  increase, the score of the model's outputs and what the generic parts may do with it (capabilities,
  never a task name);
- a :class:`FileAttacker` (``task.file_attacker(run)``) for ``medsight attack``: how one image file is
  attacked on the network's grid and its perturbation mapped back to the file's grid.

robustness/ (attacks, defences, detectors, smoothing, the universal held-out fit) reaches a task only
through these protocols. :func:`unit_perturbation` is the one step every file attacker shares.

Example::

    from medsight.task_registry import get_task
    adapter = get_task(run.config.task).attack_adapter(run, "test", max_cases=8)
    u, state = adapter.space.to_unit(adapter.batches[0].x)
    logits = adapter.space.forward_fn(adapter.forward, state)(u)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from medsight.robustness.attacks.base import Attack, Forward, LossFn
from medsight.robustness.space import InputSpace

if TYPE_CHECKING:
    from medsight.io import Image


@dataclass
class Batch:
    """Normalised inputs (B, C, *spatial), their targets as the task's loss expects them, case ids."""

    x: torch.Tensor
    y: torch.Tensor
    case_ids: list[str]


@runtime_checkable
class AttackAdapter(Protocol):
    """A trained run ready to be attacked on one split: what ``medsight robustness`` needs.

    Capabilities say which generic analyses apply (they replace checks of the task's name):

    - ``supports_detectors``: feature detectors (Mahalanobis, LID, feature squeezing) can be fitted on the
      validation split's clean inputs, through ``model``'s penultimate features;
    - ``supports_universal``: one perturbation fits every input (inputs share one size) and a validation
      split exists to fit it on;
    - ``supports_smoothing``: a single-label classifier, which randomised smoothing can certify
      (``len(class_names)`` classes, ``Batch.y`` class indices).
    """

    @property
    def model(self) -> nn.Module:
        """The network (in eval mode), whose layers the detectors read."""
        ...

    @property
    def space(self) -> InputSpace:
        """Maps the normalised inputs of ``batches`` to the unit attack space and back."""
        ...

    @property
    def batches(self) -> list[Batch]:
        """The evaluated cases of the split."""
        ...

    @property
    def metric(self) -> str:
        """The headline key of :meth:`score`, e.g. ``"accuracy"`` or ``"dice"``."""
        ...

    @property
    def class_names(self) -> list[str]: ...

    @property
    def supports_detectors(self) -> bool: ...

    @property
    def supports_universal(self) -> bool: ...

    @property
    def supports_smoothing(self) -> bool: ...

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's outputs (logits) of a normalised batch, differentiable in ``x``."""
        ...

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The task's loss per sample, shape (B,): what the attacks increase."""
        ...

    def score(self, outputs: list[torch.Tensor], batches: list[Batch]) -> dict[str, float]:
        """Metrics of ``outputs`` (one per batch, from :meth:`forward`) against the batches' targets."""
        ...

    def describe(self, logits: torch.Tensor, y: torch.Tensor) -> str:
        """A short caption of the model's answer on one case (logits (1, ...)) for the example figures."""
        ...


@runtime_checkable
class FileAttacker(Protocol):
    """How ``medsight attack`` attacks one image file of a run's task, against the model's own answer.

    Where it also has ``model`` (the network) and ``network_input(image)`` (the image on the network's
    grid, normalised, (N, C, *spatial): N tiles of one image, or 1), the out-of-distribution flag reads the
    network's features of each input through them (:mod:`medsight.deploy.feature_profile`).
    """

    @property
    def space(self) -> InputSpace:
        """The network's input space; its ``raw_span`` maps unit steps to stored intensities."""
        ...

    def perturbation(
        self, image: Image, attack_fn: Attack, eps: float, steps: int, generator: torch.Generator
    ) -> tuple[str, np.ndarray]:
        """(the model's answer on the clean image, the unit-space perturbation (C, *spatial) on the file's
        grid) of ``attack_fn`` with budget ``eps`` (unit space)."""
        ...

    def answer(self, image: Image) -> str:
        """The model's answer on an image, as one short line of attack.csv."""
        ...


def case_count(adapter: AttackAdapter) -> int:
    """How many cases the adapter's batches hold."""
    return sum(len(b.case_ids) for b in adapter.batches)


def unit_perturbation(
    space: InputSpace,
    forward: Forward,
    loss: LossFn,
    x: torch.Tensor,
    target: torch.Tensor,
    attack_fn: Attack,
    *,
    eps: float,
    steps: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """The unit-space perturbation (C, *spatial) of one normalised image ``x`` (1, C, *spatial) that
    ``attack_fn`` finds against ``target``, on the network's grid."""
    u, state = space.to_unit(x)
    u_adv = attack_fn(
        space.forward_fn(forward, state), loss, u, target, eps=eps, steps=steps, generator=generator
    )
    return (u_adv - u)[0].detach()
