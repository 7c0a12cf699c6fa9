"""Detection end to end: boxes -> plan -> inputs once (resized to the plan's grid, boxes with them) ->
train (augmentation moves the boxes with the image) -> evaluate (COCO mAP, AP per class, FROC with
bootstrap CIs; per-image rows; PR / FROC plots; best and worst images) -> report.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from medsight.data.boxes import BoxData, load_boxes
from medsight.data.spec import Case
from medsight.errors import ConfigError, DataError
from medsight.metrics.table import MetricTable
from medsight.runs import Run
from medsight.tasks.contract import EvaluateRequest
from medsight.tasks.detect.planning import DetectPlan
from medsight.tasks.detect.postprocess import input_array
from medsight.tasks.detect.task import DetectTask

log = logging.getLogger(__name__)
EVAL_BATCH = 16
SCALE_RANGE = 0.15  # random zoom in [0.85, 1.15]
SHIFT_RANGE = 0.08  # random shift, fraction of the input side
INTENSITY_RANGE = 0.1
MIN_KEPT = 0.5  # an augmented box keeps at least this fraction of its side on every axis, else dropped


def load_run_data(run: Run) -> BoxData:
    return load_boxes(run.config.data.dataset)


def split_samples(run: Run, data: BoxData) -> tuple[list[Case], list[Case]]:
    """(train, validation): the dataset's own val split when it has one, else the run's patient-level
    fold of the training images (``data.fold``; ``all``: no validation)."""
    from medsight.runs import fold_ids

    if data.splits.get("val"):
        return data.train, data.splits["val"]
    train_ids, val_ids = fold_ids(run, data.train)
    by_id = {c.case_id: c for c in data.train}
    return [by_id[i] for i in train_ids], [by_id[i] for i in val_ids]


def samples_of_split(run: Run, split: str) -> list[Case]:
    """The run's ``val`` (its validation images), ``test`` or ``train`` images; never empty."""
    data = load_run_data(run)
    if split == "val":
        cases = split_samples(run, data)[1]
    elif split in ("test", "train"):
        cases = data.splits.get(split, [])
    else:
        raise ConfigError(f"--split: expected val, test or train, got {split!r}")
    if not cases:
        raise DataError(f"{data.name}: split {split!r} has no images")
    return cases


# ------------------------------------------------------------------------------------------- inputs


def stack_inputs(cases: list[Case], plan: DetectPlan) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    """Every case as the network's input ``(N, C, *input_size)`` float16, and each image's shape."""
    out = torch.empty((len(cases), plan.in_channels, *plan.input_size), dtype=torch.float16)
    shapes = []
    for i, case in enumerate(cases):
        try:
            image = case.read()
        except DataError as exc:
            raise DataError(f"case {case.case_id}: {exc}") from exc
        shapes.append(tuple(int(s) for s in image.shape[1:]))
        out[i] = torch.from_numpy(input_array(image, plan))
    return out, shapes


def input_boxes(
    cases: list[Case], shapes: list[tuple[int, ...]], plan: DetectPlan
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Each case's boxes on the input grid (array order) and labels."""
    from medsight.tasks.detect.postprocess import to_input_boxes

    boxes, labels = [], []
    for case, shape in zip(cases, shapes, strict=True):
        coords = case.boxes.coords if case.boxes is not None else np.zeros((0, 2 * plan.dim))
        lab = case.boxes.labels if case.boxes is not None else np.zeros(0, dtype=np.int64)
        boxes.append(torch.from_numpy(to_input_boxes(coords, plan.input_size, shape)).float())
        labels.append(torch.as_tensor(lab, dtype=torch.long))
    return boxes, labels


class ShuffledBatches:
    """One shuffled pass over in-memory inputs per iteration; flips, zoom, shift and intensity jitter
    applied to each image and its boxes alike."""

    def __init__(
        self,
        x: torch.Tensor,
        boxes: list[torch.Tensor],
        labels: list[torch.Tensor],
        plan: DetectPlan,
        seed: int,
    ) -> None:
        self.x, self.boxes, self.labels, self.plan = x, boxes, labels, plan
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        order = torch.randperm(len(self.x), generator=self.generator)
        batch = min(self.plan.batch_size, len(order))
        for start in range(0, len(order) - batch + 1, batch):
            idx = order[start : start + batch].tolist()
            image = self.x[idx].float()
            boxes = [self.boxes[i] for i in idx]
            labels = [self.labels[i] for i in idx]
            if self.plan.augment:
                image, boxes, labels = augment(image, boxes, labels, self.plan.flip_axes, self.generator)
            yield {"image": image, "boxes": boxes, "labels": labels}


def augment(
    x: torch.Tensor,
    boxes: list[torch.Tensor],
    labels: list[torch.Tensor],
    flip_axes: list[int],
    generator: torch.Generator,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Random flips, zoom and shift of a batch (one affine per image, boxes moved with MONAI's
    ``apply_affine_to_boxes`` and clipped with ``clip_boxes_to_image``), then intensity jitter."""
    import torch.nn.functional as F

    b, dim = x.shape[0], x.dim() - 2
    size = torch.tensor(x.shape[2:], dtype=torch.float32)
    zoom = 1 + (torch.rand(b, generator=generator) * 2 - 1) * SCALE_RANGE
    shift = (torch.rand(b, dim, generator=generator) * 2 - 1) * 2 * SHIFT_RANGE  # normalised units
    flip = torch.zeros(b, dim)
    for axis in flip_axes:
        flip[:, axis] = (torch.rand(b, generator=generator) < 0.5).float()
    sign = 1 - 2 * flip  # -1: flipped
    theta = torch.zeros(b, dim, dim + 1)
    for a in range(dim):  # grid_sample's coordinates run over the axes in reverse order
        g = dim - 1 - a
        theta[:, g, g] = sign[:, a] / zoom
        theta[:, g, dim] = -shift[:, a] * sign[:, a] / zoom
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    view = (b,) + (1,) * (dim + 1)
    out = out * (1 + (torch.rand(view, generator=generator) * 2 - 1) * INTENSITY_RANGE)
    out = out + (torch.rand(view, generator=generator) * 2 - 1) * INTENSITY_RANGE
    moved = [
        _move_boxes(bx, lab, zoom[i], shift[i], sign[i], size)
        for i, (bx, lab) in enumerate(zip(boxes, labels, strict=True))
    ]
    return out, [m[0] for m in moved], [m[1] for m in moved]


def _move_boxes(
    boxes: torch.Tensor,
    labels: torch.Tensor,
    zoom: torch.Tensor,
    shift: torch.Tensor,
    sign: torch.Tensor,
    size: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (array order, pixels) under normalised ``u_out = sign * zoom * u_in + shift``."""
    from monai.apps.detection.transforms.box_ops import apply_affine_to_boxes
    from monai.data.box_utils import clip_boxes_to_image

    if boxes.numel() == 0:
        return boxes, labels
    dim = len(size)
    affine = torch.eye(dim + 1, dtype=torch.float64)
    for a in range(dim):  # in pixels: x_out = s * x_in + (1 - s) * N / 2 + shift * N / 2
        s = float(sign[a] * zoom)
        affine[a, a] = s
        affine[a, dim] = (1 - s) * float(size[a]) / 2 + float(shift[a]) * float(size[a]) / 2
    moved = apply_affine_to_boxes(boxes.double(), affine)
    clipped, keep = clip_boxes_to_image(moved, [int(s) for s in size], remove_empty=True)
    before = (moved[keep, dim:] - moved[keep, :dim]).clamp(min=1e-6)
    after = clipped[:, dim:] - clipped[:, :dim]
    enough = ((after / before) >= MIN_KEPT).all(dim=1)
    return clipped[enough].float(), labels[keep][enough]


# ------------------------------------------------------------------------------------------ training


def validation_batches(
    x: torch.Tensor, boxes: list[torch.Tensor], labels: list[torch.Tensor]
) -> list[dict[str, Any]]:
    return [
        {
            "image": x[i : i + EVAL_BATCH].float(),
            "boxes": boxes[i : i + EVAL_BATCH],
            "labels": labels[i : i + EVAL_BATCH],
        }
        for i in range(0, len(x), EVAL_BATCH)
    ]


def train_detection(run: Run, evaluate: bool = True) -> None:
    """Train the run's detector; then (``evaluate``) score its validation images."""
    from medsight.engine import Trainer
    from medsight.engine.distributed import dist_info

    data = load_run_data(run)
    train, val = split_samples(run, data)
    task = DetectTask(run.plan, run.config.train)
    trainer = Trainer(task, run.config.train, run.path)
    model = task.build_model()
    log.info("preparing %d training and %d validation images", len(train), len(val))
    x, shapes = stack_inputs(train, run.plan)
    boxes, labels = input_boxes(train, shapes, run.plan)
    val_data, prepared = None, None
    if val:
        x_val, val_shapes = stack_inputs(val, run.plan)
        val_data = validation_batches(x_val, *input_boxes(val, val_shapes, run.plan))
        prepared = (x_val, val_shapes)
    seed = run.config.train.seed + 1000 * dist_info().rank
    trainer.fit(model, ShuffledBatches(x, boxes, labels, run.plan, seed), val_data)
    if val and evaluate:
        evaluate_cases(run, val, "val", prepared).write(run.eval_dir("val"))


def load_model(run: Run, device: str = "auto") -> tuple[DetectTask, torch.nn.Module]:
    from medsight.engine import load_model_weights, resolve_device

    task = DetectTask(run.plan, run.config.train)
    model = task.build_model()
    load_model_weights(model, run.checkpoint)
    return task, model.to(resolve_device(device)).eval()


def network_outputs(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """The network's ``(N, A, K + 2d)`` outputs for prepared inputs (float16 as stored)."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        parts = [
            model(x[i : i + EVAL_BATCH].float().to(device)).float().cpu()
            for i in range(0, len(x), EVAL_BATCH)
        ]
    return torch.cat(parts).numpy()


def predict_cases(
    model: torch.nn.Module, plan: DetectPlan, cases: list[Case], prepared: Any = None
) -> list[dict[str, np.ndarray]]:
    """Each case's detections (medsight order, image pixels) with the shared post-processing."""
    from medsight.tasks.detect.postprocess import detections

    x, shapes = prepared if prepared is not None else stack_inputs(cases, plan)
    return detections(network_outputs(model, x), plan, shapes)


# ---------------------------------------------------------------------------------------- evaluation


def evaluate_request(run: Run, request: EvaluateRequest) -> MetricTable:
    """Score the run on ``val`` (its validation images), ``test`` or ``train`` of its dataset."""
    if request.input is not None or request.reference is not None:
        raise ConfigError("evaluate: --input/--reference are not used by detection; it scores --split")
    return evaluate_cases(run, samples_of_split(run, request.split), request.split)


def evaluate_cases(run: Run, cases: list[Case], split: str, prepared: Any = None) -> MetricTable:
    """Predict and score ``cases``: a row per image, the pooled summary (mAP@0.5, mAP@0.5:0.95, CPM
    and FROC sensitivities, AP per class, with bootstrap CIs over images), and the figures in
    eval/<split>/ (PR curves, FROC curve, best and worst images)."""
    from medsight.metrics.detection import detection_rows, detection_summary
    from medsight.tasks.detect.figures import write_figures

    _, model = load_model(run)
    plan = run.plan
    preds = predict_cases(model, plan, cases, prepared)
    refs = [reference(c, plan.dim) for c in cases]
    pooled = detection_summary(preds, refs, plan.class_names)
    rows = detection_rows(preds, refs)
    info = {"split": split, "images": len(cases), "boxes": int(sum(len(r["boxes"]) for r in refs))}
    write_figures(run.eval_dir(split), cases, preds, refs, rows, plan)
    return MetricTable(rows=rows, keys=["case_id"], info=info, pooled=pooled)


def reference(case: Case, dim: int) -> dict[str, Any]:
    """A case's reference boxes as the metrics take them."""
    if case.boxes is None:
        return {
            "boxes": np.zeros((0, 2 * dim)),
            "labels": np.zeros(0, dtype=np.int64),
            "image_id": case.case_id,
        }
    return {"boxes": case.boxes.coords, "labels": case.boxes.labels, "image_id": case.case_id}
