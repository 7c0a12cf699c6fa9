"""A detector as ``medsight robustness`` and ``medsight attack`` see it (the contract's attack adapters).

Inputs are attacked on the plan's input grid. The per-sample loss is MONAI's detector loss
(classification + box regression, the training loss) of each image against its boxes; targets travel
as a padded ``(B, N, 2 * dim + 1)`` tensor (box corners in array order on the input grid, then the
class; class -1 pads). The file attacker attacks the model's own boxes (scored >= 0.5).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medsight.io import Image
from medsight.robustness.adapter import Batch, unit_perturbation
from medsight.robustness.attacks.base import Attack
from medsight.robustness.space import InputSpace
from medsight.runs import Run

BATCH = 16
OWN_SCORE = 0.5


def pad_targets(boxes: list[torch.Tensor], labels: list[torch.Tensor], dim: int) -> torch.Tensor:
    n = max([len(b) for b in boxes] + [1])
    y = torch.full((len(boxes), n, 2 * dim + 1), -1.0)
    for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
        y[i, : len(b), : 2 * dim] = b
        y[i, : len(b), 2 * dim] = lab.float()
    return y


def unpad(y: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    keep = y[:, 2 * dim] >= 0
    return y[keep, : 2 * dim], y[keep, 2 * dim].long()


class DetectorLoss:
    """MONAI's detector loss of each image of a batch, from the network's per-anchor outputs."""

    def __init__(self, task: Any, model: torch.nn.Module) -> None:
        from medsight.tasks.detect.postprocess import anchors

        self.plan, self.detector = task.plan, task.detector(model)
        self.anchors = torch.from_numpy(anchors(self.plan))
        self.locations = [int(np.prod([s // st for s in self.plan.input_size])) for st in self.plan.strides]

    def __call__(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        k, dim = len(self.plan.class_names), self.plan.dim
        losses = []
        for out, target in zip(outputs, y, strict=True):
            boxes, labels = unpad(target, dim)
            heads = {"classification": out[None, :, :k], "box_regression": out[None, :, k:]}
            part = self.detector.compute_loss(
                heads, [{"boxes": boxes, "labels": labels}], [self.anchors.to(out.device)], self.locations
            )
            losses.append(part["classification"] + part["box_regression"])
        return torch.stack(losses)


class DetectorAdapter:
    """A detection run's split, ready to be attacked (a robustness ``AttackAdapter``)."""

    metric = "map_50"
    supports_detectors = False
    supports_universal = True
    supports_smoothing = False

    def __init__(self, run: Run, split: str, max_cases: int | None = None) -> None:
        from medsight.tasks.detect.pipeline import input_boxes, load_model, samples_of_split, stack_inputs

        self.run = run
        self.task, self.model = load_model(run, device="cpu")
        self.space = InputSpace(run.plan.normalization)
        self.class_names = list(run.plan.class_names)
        self._loss = DetectorLoss(self.task, self.model)
        cases = samples_of_split(run, split)[:max_cases]
        x, shapes = stack_inputs(cases, run.plan)
        y = pad_targets(*input_boxes(cases, shapes, run.plan), run.plan.dim)
        self.batches = [
            Batch(x[i : i + BATCH].float(), y[i : i + BATCH], [c.case_id for c in cases[i : i + BATCH]])
            for i in range(0, len(cases), BATCH)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._loss(outputs.float(), y)

    def score(self, outputs: list[torch.Tensor], batches: list[Batch]) -> dict[str, float]:
        """COCO mAP@0.5 and mAP@0.5:0.95 on the input grid."""
        from medsight.metrics.detection import coco_map
        from medsight.tasks.detect.postprocess import anchors, select

        plan, anchor_boxes = self.run.plan, anchors(self.run.plan)
        preds, refs = [], []
        for out, batch in zip(outputs, batches, strict=True):
            for o, t in zip(out.detach().float().numpy(), batch.y, strict=True):
                preds.append(select(o, anchor_boxes, plan))
                boxes, labels = unpad(t, plan.dim)
                refs.append({"boxes": boxes.numpy(), "labels": labels.numpy()})
        m = coco_map(preds, refs, num_classes=len(plan.class_names))
        return {
            "map_50": float(np.nan_to_num(m["map_50"])),
            "map_50_95": float(np.nan_to_num(m["map_50_95"])),
        }

    def describe(self, logits: torch.Tensor, y: torch.Tensor) -> str:
        return _answer(logits, self.run.plan)


class DetectorFiles:
    """Attacks image files of a detection run (a robustness ``FileAttacker``)."""

    def __init__(self, run: Run) -> None:
        from medsight.tasks.detect.pipeline import load_model

        self.run = run
        self.task, self.model = load_model(run, device="cpu")
        self.space = InputSpace(run.plan.normalization)
        self._loss = DetectorLoss(self.task, self.model)

    def answer(self, image: Image) -> str:
        with torch.inference_mode():
            return _answer(self.model(self._input(image)).float(), self.run.plan)

    def perturbation(
        self, image: Image, attack_fn: Attack, eps: float, steps: int, generator: torch.Generator
    ) -> tuple[str, np.ndarray]:
        from medsight.tasks.detect.postprocess import anchors, select

        plan, x = self.run.plan, self._input(image)
        with torch.inference_mode():
            out = self.model(x).float()
        own = select(out[0].numpy(), anchors(plan), plan)
        keep = own["scores"] >= OWN_SCORE
        y = pad_targets(
            [torch.from_numpy(own["boxes"][keep]).float()], [torch.from_numpy(own["labels"][keep])], plan.dim
        )
        delta = unit_perturbation(
            self.space, self.model, self._loss, x, y, attack_fn, eps=eps, steps=steps, generator=generator
        )
        from medsight.transforms.segmentation import resize

        return _answer(out, plan), np.asarray(
            resize(delta.numpy().astype(np.float32), tuple(image.array.shape[1:]))
        )

    def _input(self, image: Image) -> torch.Tensor:
        from medsight.tasks.detect.postprocess import input_array

        return torch.from_numpy(input_array(image.array.astype(np.float32), self.run.plan))[None]


def _answer(logits: torch.Tensor, plan: Any) -> str:
    """``"2 boxes: Right Lung 0.97, Left Lung 0.95"`` (those scored >= 0.5)."""
    from medsight.tasks.detect.postprocess import anchors, select

    found = select(logits[0].detach().float().numpy(), anchors(plan), plan)
    keep = found["scores"] >= OWN_SCORE
    parts = [
        f"{plan.class_names[int(k)]} {s:.2f}"
        for s, k in zip(found["scores"][keep], found["labels"][keep], strict=True)
    ]
    return f"{len(parts)} boxes" + (f": {', '.join(parts[:5])}" if parts else "")


def attack_adapter(run: Run, split: str, max_cases: int | None = None) -> DetectorAdapter:
    return DetectorAdapter(run, split, max_cases)


def file_attacker(run: Run) -> DetectorFiles:
    return DetectorFiles(run)
