"""What an attack needs from a trained run, the same shape for every task: the model, its input
space, the evaluated cases as normalised batches with their targets, the task's per-sample loss, and
a score of the model's outputs (accuracy and AUC for classifiers, Dice for segmenters).

Classifiers are attacked on their input grid (the plan's input size); segmenters on the plan's
resampled grid, through MONAI's sliding-window inference (differentiable) with the plan's patch and
overlap. Neither uses flip TTA: clean and attacked scores are of the same network without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from medsight.robustness.space import InputSpace
from medsight.runs import Run

CLASSIFY_BATCH = 128


@dataclass
class Batch:
    """Normalised inputs (B, C, *spatial), their targets as the task's loss expects them, case ids."""

    x: torch.Tensor
    y: torch.Tensor
    case_ids: list[str]


@dataclass
class AttackTarget:
    """A run ready to be attacked: ``forward(x)`` gives logits of normalised inputs."""

    task: Any
    model: nn.Module
    space: InputSpace
    batches: list[Batch]
    metric: str  # the headline metric: "accuracy" or "dice"
    forward: Callable[[torch.Tensor], torch.Tensor]
    score: Callable[[list[torch.Tensor], list[Batch]], dict[str, float]]
    kind: str  # "classify" or "segment"
    class_names: list[str] = field(default_factory=list)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The task's loss per sample: what the attacks increase."""
        return self.task.per_sample_loss(logits, y)

    @property
    def cases(self) -> int:
        return sum(len(b.case_ids) for b in self.batches)


def with_defences(target: AttackTarget, defences: list[str]) -> AttackTarget:
    """The same target seen through input-transformation defences (``"median:kernel=3"``, ``"bit-depth"``
    ...; see ``medsight.robustness.defences``). Attacks on it are adaptive: they differentiate through the
    defence (BPDA, the identity backward, for the non-differentiable ones)."""
    import dataclasses

    from medsight.errors import ConfigError
    from medsight.robustness.defences import defended_forward

    space, bare = target.space, target.forward
    if not space.stateless:
        raise ConfigError(
            "defences: need an input normalisation without per-image state (rgb, ct or unmasked zscore)"
        )
    defended_forward(bare, defences)  # unknown names and parameters fail here

    def forward(x: torch.Tensor) -> torch.Tensor:
        u, state = space.to_unit(x)
        return defended_forward(space.forward_fn(bare, state), defences)(u)

    return dataclasses.replace(target, forward=forward)


def load_target(run: Run, split: str = "test", max_cases: int | None = None) -> AttackTarget:
    """The run's model and the cases of ``split`` (the first ``max_cases`` of them)."""
    if run.config.task == "classify":
        return _classify_target(run, split, max_cases)
    return _segment_target(run, split, max_cases)


# ---------------------------------------------------------------------------------------- classify
def _classify_target(run: Run, split: str, max_cases: int | None) -> AttackTarget:
    from medsight.tasks.classify.pipeline import label_tensor, load_model, samples_of_split, stack_inputs

    task, model = load_model(run, device="cpu")
    samples = samples_of_split(run, split)[:max_cases]
    x, y = stack_inputs(samples, run.plan), label_tensor(samples, task.multilabel)
    batches = [
        Batch(x[i : i + CLASSIFY_BATCH].float(), y[i : i + CLASSIFY_BATCH], [s.case_id for s in chunk])
        for i in range(0, len(samples), CLASSIFY_BATCH)
        for chunk in [samples[i : i + CLASSIFY_BATCH]]
    ]

    def score(outputs: list[torch.Tensor], batches: list[Batch]) -> dict[str, float]:
        from medsight.metrics.classification import point_metrics

        probs = task.probabilities(torch.cat(outputs).float()).numpy()
        labels = torch.cat([b.y for b in batches]).numpy()
        metrics = point_metrics(labels, probs, run.plan.problem, run.plan.class_names, run.plan.thresholds)
        return {"accuracy": float(metrics["all"]["accuracy"]), "auc": float(metrics["all"]["auc_macro"])}

    return AttackTarget(
        task,
        model,
        InputSpace(run.plan.normalization),
        batches,
        "accuracy",
        model,
        score,
        "classify",
        list(run.plan.class_names),
    )


# ---------------------------------------------------------------------------------------- segment
def _segment_target(run: Run, split: str, max_cases: int | None) -> AttackTarget:
    from medsight.api import split_cases
    from medsight.data import load_dataset
    from medsight.tasks.segment.pipeline import load_model, preprocess_cases
    from medsight.tasks.segment.sampler import training_target

    task, model = load_model(run, device="cpu")
    spec = load_dataset(run.config.data.dataset)
    cases = [c for c in split_cases(run, spec, split) if c.label is not None][:max_cases]
    if not cases:
        from medsight.errors import DataError

        raise DataError(f"{spec.name}: split {split!r} has no labelled cases to attack")
    batches = [
        Batch(
            torch.from_numpy(pre.image)[None].float(),
            torch.from_numpy(training_target(pre.label, run.plan))[None],
            [pre.case_id],
        )
        for pre in preprocess_cases(spec, cases, run.plan)
    ]

    forward = segment_forward(model, run.plan)

    def score(outputs: list[torch.Tensor], batches: list[Batch]) -> dict[str, float]:
        dice = [
            mean_dice(out, b.y, run.plan.regions is not None) for out, b in zip(outputs, batches, strict=True)
        ]
        return {"dice": float(np.nanmean(dice)) if not np.all(np.isnan(dice)) else float("nan")}

    return AttackTarget(
        task,
        model,
        InputSpace(run.plan.normalization),
        batches,
        "dice",
        forward,
        score,
        "segment",
        list(run.plan.class_names),
    )


def segment_forward(model: nn.Module, plan: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """Logits of a whole normalised image (1, C, *grid): MONAI's sliding window with the plan's patch and
    overlap, Gaussian-weighted, full-resolution head only; differentiable in the input."""
    from monai.inferers import sliding_window_inference

    from medsight.tasks.segment.task import HeadOnly

    head = HeadOnly(model)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return sliding_window_inference(
            x,
            roi_size=plan.patch_size,
            sw_batch_size=plan.batch_size,
            predictor=head,
            overlap=plan.sliding_window_overlap,
            mode="gaussian",
        )

    return forward


def mean_dice(logits: torch.Tensor, target: torch.Tensor, regions: bool) -> float:
    """Mean foreground Dice of one case's logits (1, K, ...) against its target (NaN: nothing to find)."""
    if regions:
        pred, ref = logits[0] > 0, target[0] > 0.5
    else:
        k = logits.shape[1]
        index, truth = logits[0].argmax(dim=0), target[0, 0]
        pred = torch.stack([index == c for c in range(1, k)])
        ref = torch.stack([truth == c for c in range(1, k)])
    inter = (pred & ref).flatten(1).sum(1).float()
    total = (pred.flatten(1).sum(1) + ref.flatten(1).sum(1)).float()
    dice = torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.full_like(total, float("nan")))
    values = dice[~torch.isnan(dice)]
    return float(values.mean()) if len(values) else float("nan")
