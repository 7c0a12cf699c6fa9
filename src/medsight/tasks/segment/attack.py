"""A segmenter as ``medsight robustness`` and ``medsight attack`` see it (the contract's attack adapters).

Cases are attacked one at a time on the plan's resampled grid, through MONAI's sliding-window inference
(differentiable) with the plan's patch and overlap, full-resolution head only, without flip TTA: clean and
attacked scores are of the same network without it. The score is the mean foreground Dice of
:func:`medsight.metrics.segmentation.dice_coefficient` inside the case's region of interest where the
dataset has one, as ``medsight evaluate`` scores (which adds TTA and post-processing on the original grid).
Cases differ in size and features, so detectors, universal perturbations and smoothing do not apply.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from medsight.data.spec import Case, DatasetSpec
from medsight.io import Image
from medsight.metrics.segmentation import dice_coefficient
from medsight.robustness.adapter import Batch, unit_perturbation
from medsight.robustness.attacks.base import Attack
from medsight.robustness.space import InputSpace
from medsight.runs import Run
from medsight.tasks.segment.planning import Plan


class SegmenterAdapter:
    """A segmentation run's split, ready to be attacked (a robustness ``AttackAdapter``)."""

    metric = "dice"
    supports_detectors = False
    supports_universal = False
    supports_smoothing = False

    def __init__(self, run: Run, split: str, max_cases: int | None = None) -> None:
        from medsight.tasks.segment.pipeline import load_model

        self.run = run
        self.task, self.model = load_model(run, device="cpu")
        self.space = InputSpace(run.plan.normalization)
        self.class_names = list(run.plan.class_names)
        self.batches, self._rois = _batches(run, split, max_cases)
        self._forward = sliding_window_forward(self.model, run.plan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.task.per_sample_loss(logits, y)

    def score(self, outputs: list[torch.Tensor], batches: list[Batch]) -> dict[str, float]:
        """The mean over cases of each case's mean foreground Dice (inside its region of interest)."""
        regions = self.run.plan.regions is not None
        dice = [
            mean_dice(out, b.y, regions, self._rois.get(b.case_ids[0]))
            for out, b in zip(outputs, batches, strict=True)
        ]
        return {"dice": float(np.mean(dice))}

    def describe(self, logits: torch.Tensor, y: torch.Tensor) -> str:
        """The case's mean foreground Dice on the whole grid (a caption knows no region of interest)."""
        return f"Dice {mean_dice(logits, y, self.run.plan.regions is not None):.3f}"


class SegmenterFiles:
    """Attacks image files of a segmentation run (a robustness ``FileAttacker``)."""

    def __init__(self, run: Run) -> None:
        from medsight.tasks.segment.pipeline import load_model

        self.run = run
        self.task, self.model = load_model(run, device="cpu")
        self.space = InputSpace(run.plan.normalization)
        self.forward = sliding_window_forward(self.model, run.plan)

    def answer(self, image: Image) -> str:
        from medsight.data.reading import CaseData

        with torch.inference_mode():
            labels = self.task.predict(self.model, CaseData(case=Case(case_id="x", images=()), image=image))
        return f"{int((labels.output.array > 0).sum())} foreground voxels"

    def perturbation(
        self, image: Image, attack_fn: Attack, eps: float, steps: int, generator: torch.Generator
    ) -> tuple[str, np.ndarray]:
        from medsight.transforms.segmentation import preprocess, restore

        pre = preprocess(image, None, self.run.plan)
        x = torch.from_numpy(pre.image)[None].float()
        own = self._own_answer(x)
        loss = self.task.per_sample_loss
        delta = unit_perturbation(
            self.space, self.forward, loss, x, own, attack_fn, eps=eps, steps=steps, generator=generator
        )
        return self.answer(image), restore(delta.numpy(), pre, background=0.0)

    def network_input(self, image: Image) -> torch.Tensor:
        """The image on the plan's grid, normalised, as tiles of the plan's patch size (N, C, *patch):
        up to two per axis in 2D, evenly spread over the image (one, central, in 3D), zero-padded where the
        image is smaller than a patch."""
        from medsight.transforms.segmentation import preprocess

        pre = preprocess(image, None, self.run.plan, log_scale=False)  # predict has logged the scale
        return torch.from_numpy(patch_tiles(pre.image, self.run.plan.patch_size, 2 if image.ndim == 2 else 1))

    def _own_answer(self, x: torch.Tensor) -> torch.Tensor:
        """The model's clean segmentation of ``x`` as a training target: what the attack moves away from."""
        from medsight.tasks.segment.sampler import training_target
        from medsight.transforms.segmentation import to_label_map

        plan = self.run.plan
        with torch.inference_mode():
            logits = self.forward(x)
            probs = torch.sigmoid(logits) if plan.regions else logits.softmax(1)
        labels = to_label_map(probs[0].numpy(), plan.label_values, plan.regions)[None]
        return torch.from_numpy(training_target(labels, plan))[None]


def patch_tiles(image: np.ndarray, patch: list[int], per_axis: int) -> np.ndarray:
    """``image`` (C, *spatial) cut into patches (N, C, *patch): ``per_axis`` evenly spread starts on every
    axis longer than the patch, zero-padded to the patch where shorter."""
    import itertools

    short = [max(0, p - s) for s, p in zip(image.shape[1:], patch, strict=True)]
    padded = np.pad(image, [(0, 0)] + [(n // 2, n - n // 2) for n in short])
    starts = [_starts(s - p, per_axis) for s, p in zip(padded.shape[1:], patch, strict=True)]
    tiles = [
        padded[(slice(None), *(slice(a, a + p) for a, p in zip(corner, patch, strict=True)))]
        for corner in itertools.product(*starts)
    ]
    return np.stack(tiles).astype(np.float32, copy=False)


def _starts(room: int, count: int) -> list[int]:
    """``count`` evenly spread starts in ``room`` voxels to spare (one: the central one)."""
    if count == 1 or room == 0:
        return [room // 2]
    return sorted({int(round(v)) for v in np.linspace(0, room, count)})


def attack_adapter(run: Run, split: str, max_cases: int | None = None) -> SegmenterAdapter:
    """The run's model and the first ``max_cases`` labelled cases of ``split``, ready to be attacked."""
    return SegmenterAdapter(run, split, max_cases)


def file_attacker(run: Run) -> SegmenterFiles:
    """How ``medsight attack`` attacks image files of this segmentation run."""
    return SegmenterFiles(run)


def sliding_window_forward(model: nn.Module, plan: Plan) -> Callable[[torch.Tensor], torch.Tensor]:
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


def mean_dice(
    logits: torch.Tensor, target: torch.Tensor, regions: bool, roi: np.ndarray | None = None
) -> float:
    """Mean foreground Dice of one case's logits (1, K, ...) against its training target: region masks
    (1, R, ...) when ``regions``, else class indices (1, 1, ...); each class by ``dice_coefficient``,
    only inside ``roi`` (a boolean mask of the grid) when given."""
    if regions:
        pred, ref = logits[0] > 0, target[0] > 0.5
    else:
        index, truth = logits[0].argmax(dim=0), target[0, 0]
        pred = torch.stack([index == c for c in range(1, logits.shape[1])])
        ref = torch.stack([truth == c for c in range(1, logits.shape[1])])
    inside = np.ones(pred.shape[1:], dtype=bool) if roi is None else roi
    pairs = zip(pred.numpy(), ref.numpy(), strict=True)
    return float(np.mean([dice_coefficient(p & inside, r & inside) for p, r in pairs]))


def _batches(run: Run, split: str, max_cases: int | None) -> tuple[list[Batch], dict[str, np.ndarray]]:
    """The split's first ``max_cases`` labelled cases, preprocessed, one case per batch; and the regions
    of interest on the network's grid of the cases that have one, by case id."""
    from medsight.data import load_dataset
    from medsight.errors import DataError
    from medsight.runs import split_cases
    from medsight.tasks.segment.pipeline import parallel_map

    spec = load_dataset(run.config.data.dataset)
    cases = [c for c in split_cases(run, spec, split) if c.label is not None][:max_cases]
    if not cases:
        raise DataError(f"{spec.name}: split {split!r} has no labelled cases to attack")
    pairs = parallel_map(lambda case: _case_batch(spec, case, run.plan), cases)
    rois = {b.case_ids[0]: roi for b, roi in pairs if roi is not None}
    return [b for b, _ in pairs], rois


def _case_batch(spec: DatasetSpec, case: Case, plan: Plan) -> tuple[Batch, np.ndarray | None]:
    """One case on the network's grid, and its region of interest there (None: the whole image)."""
    from medsight.data.reading import read_case
    from medsight.tasks.segment.sampler import training_target
    from medsight.transforms.segmentation import preprocess, resize

    data = read_case(spec, case)
    pre = preprocess(data.image, data.label, plan, case.case_id)
    batch = Batch(
        torch.from_numpy(pre.image)[None].float(),
        torch.from_numpy(training_target(pre.label, plan))[None],
        [pre.case_id],
    )
    if data.roi is None:
        return batch, None
    roi = data.roi.array[(slice(None), *pre.bbox)].astype(np.int16)
    return batch, resize(roi, pre.image.shape[1:], labels=True)[0] > 0
