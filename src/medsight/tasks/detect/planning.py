"""The detection plan, and planning a detector from the boxes, sized for the machine and budget.

The choices, each with its reason in ``plan.reasons``:

1. input size: the median image size scaled (aspect kept) to the device's largest side (CPU: 256 px
   in 2D, 96 voxels in 3D), each side rounded to a multiple of the coarsest stride (32 or 64);
2. normalisation: 8-bit pictures -> /255 then the dataset's channel z-score; others per-image z-score;
3. levels: strides 16, 32, 64 when the small boxes (5th percentile of the shorter side) span at least
   4 cells of 16 on the input grid, else 8, 16, 32; anchors: ``ANCHORS`` base shapes, the k-means
   centres (log space) of the training box sides on the input grid placed at the middle level (MONAI's
   ``AnchorGeneratorWithAnchorShape`` scales them x1, x2, x4 over the levels);
4. network: RetinaNet (MONAI) on a ResNet-FPN built from MONAI blocks; its width (``base_filters``)
   is the widest candidate whose *measured* training step lets the time budget cover MIN_EPOCHS
   passes over the training images (no budget: the default width); when even the narrowest is too
   slow, the input shrinks (down to x0.5) by the square root of the overshoot;
5. batch size from the device's pixels-per-step budget, at most 1/8 of the training images;
6. flips: none when a class name says left or right (a flip would swap them), else every axis.

Importing this module is cheap (no torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import Field

from medsight.planning.budget import device_budget
from medsight.planning.plan import ChannelNorm, PlanBase

DEFAULT_NETWORK = "retinanet"
MAX_SIDE = {"cpu": {2: 256, 3: 96}, "cuda": {2: 512, 3: 128}}
STEP_PIXELS = {"cpu": {2: 8 * 256 * 256, 3: 2 * 96**3}, "cuda": {2: 16 * 512 * 512, 3: 4 * 128**3}}
MAX_BATCH = 16
MIN_EPOCHS = 40
WIDTHS = (8, 16, 24)  # candidate base_filters
ANCHORS = 3  # anchor shapes per location
STAGES = ([2, 3], [3, 4])  # FPN inputs: strides 8, 16, 32 or 16, 32, 64
MIN_INPUT_SCALE = 0.5  # a budget too short for the narrowest network shrinks the input at most this much
MIN_SIDE_PER_STRIDE = 4.0  # the small boxes (5th percentile side) span >= this many finest-level cells
STATS_SAMPLES = 64
LATERAL = ("left", "right")


class DetectPlan(PlanBase):
    """What the detect task trains with. Saved as plan.json; ``--set plan.<field>=...`` overrides."""

    task: str = "detect"
    input_size: list[int]
    network: str = DEFAULT_NETWORK
    lr: float = 1e-3  # used when train.lr is not set
    category_ids: list[int] = Field(default_factory=list)  # the dataset's id of each class (COCO)
    strides: list[int] = Field(default_factory=lambda: [8, 16, 32])
    anchor_shapes: list[list[float]]  # base anchor sides (array order, input pixels) at the finest level
    flip_axes: list[int] = Field(default_factory=list)
    score_threshold: float = 0.05
    nms_threshold: float = 0.5
    topk_candidates: int = 1000
    max_detections: int = 100
    atss_candidates: int = 4
    tta: bool = False  # no box test-time augmentation
    data_summary: dict[str, Any] = Field(default_factory=dict)


def plan_detection(
    data: Any,
    *,
    device: str = "cpu",
    measure: bool = True,
    time_budget_s: float | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> DetectPlan:
    """Plan a detector for a :class:`medsight.data.boxes.BoxData` (see the module doc).

    Raises:
        ConfigError: an override names no plan field, or has an invalid value.
    """
    from medsight.models.detection import level_strides

    overrides = dict(overrides or {})
    DetectPlan.check_override_names(overrides)
    device = device_budget(device).device
    reasons: dict[str, str] = {}
    median = _median_shape(data)
    max_side = MAX_SIDE[device][data.dim]
    size = [int(v) for v in overrides.get("input_size") or _input_size(median, max_side, 32, reasons)]
    stages = _stages(data, size, reasons)
    strides = level_strides(stages)
    if "input_size" not in overrides and strides[-1] > 32:
        size = _input_size(median, max_side, strides[-1], reasons)
    shapes = _anchor_shapes(data, median, size, strides, reasons)
    batch = _batch_size(size, len(data.train), STEP_PIXELS[device][data.dim], reasons)
    kwargs = dict(overrides.get("network_kwargs") or {"base_filters": 16})
    kwargs.update({"returned_layers": stages, "num_anchors": len(shapes)})
    if measure and time_budget_s and "network_kwargs" not in overrides:
        width, slower = _width(data, size, batch, kwargs, device, time_budget_s, reasons)
        kwargs.update(width)
        if slower > 1 and "input_size" not in overrides:
            size = _shrunk(size, slower, strides[-1], reasons)
            shapes = _anchor_shapes(data, median, size, strides, reasons)
    else:
        reasons["width"] = f"base_filters {kwargs.get('base_filters')} (no time budget to size it against)"
    return DetectPlan(
        dataset=data.name,
        dim=data.dim,
        in_channels=data.channels,
        class_names=list(data.class_names),
        category_ids=list(data.category_ids) or list(range(1, len(data.class_names) + 1)),
        input_size=size,
        normalization=_normalization(data, reasons),
        network=DEFAULT_NETWORK,
        network_kwargs=kwargs,
        batch_size=batch,
        strides=strides,
        anchor_shapes=shapes,
        flip_axes=_flip_axes(data, reasons),
        reasons=reasons,
        data_summary=data.describe(),
    ).with_overrides({k: v for k, v in overrides.items() if k != "network_kwargs"})


def _median_shape(data: Any) -> list[int]:
    shapes = np.array([c.extra["size"] for c in data.train])
    return [int(s) for s in np.median(shapes, axis=0)]


def _input_size(median: list[int], max_side: int, multiple: int, reasons: dict[str, str]) -> list[int]:
    scale = min(1.0, max_side / max(median))
    size = [max(multiple, int(round(s * scale / multiple)) * multiple) for s in median]
    reasons["input_size"] = (
        f"median image size {median} scaled x{scale:.3f} to the device's largest side {max_side}, "
        f"sides rounded to multiples of {multiple} (the coarsest stride); images are resized to it"
    )
    return size


def _input_sides(data: Any, size: list[int]) -> np.ndarray:
    """Every training box's sides on the input grid (array order)."""
    from medsight.data.boxes import box_sides

    sides = [box_sides([c], data.dim) * np.asarray(size) / np.asarray(c.extra["size"]) for c in data.train]
    sides = [s for s in sides if len(s)]
    return np.concatenate(sides) if sides else np.zeros((0, data.dim))


def _stages(data: Any, size: list[int], reasons: dict[str, str]) -> list[int]:
    """The coarser FPN (strides 16-64) when the small boxes still span MIN_SIDE_PER_STRIDE cells of 16."""
    from medsight.models.detection import level_strides

    sides = _input_sides(data, size)
    small = float(np.percentile(sides.min(axis=1), 5)) if len(sides) else 0.0
    coarse = small / level_strides(STAGES[1])[0] >= MIN_SIDE_PER_STRIDE
    stages = STAGES[1] if coarse else STAGES[0]
    reasons["strides"] = (
        f"levels at strides {level_strides(stages)}: the 5th percentile of the boxes' shorter side is "
        f"{small:.1f} "
        f"input pixels, {'>=' if coarse else '<'} {MIN_SIDE_PER_STRIDE:g} cells of stride 16"
    )
    return stages


def _anchor_shapes(
    data: Any, median: list[int], size: list[int], strides: list[int], reasons: dict[str, str]
) -> list[list[float]]:
    """ANCHORS base shapes: k-means (log space) of the box sides on the input grid, at the middle level."""
    sides = [_input_sides(data, size)]
    if not len(sides[0]):
        reasons["anchor_shapes"] = "no training boxes: square anchors of 4 strides"
        return [[4.0 * strides[0]] * data.dim] * ANCHORS
    centres = _kmeans(np.log(np.maximum(np.concatenate(sides), 1.0)), ANCHORS)
    middle = (strides[len(strides) // 2]) / strides[0]
    shapes = [[round(float(v) / middle, 2) for v in np.exp(c)] for c in centres]
    reasons["anchor_shapes"] = (
        f"{ANCHORS} k-means centres (log space) of the {sum(len(s) for s in sides)} training box sides on "
        f"the input grid, placed at the middle level (x{middle:g} of these base shapes); "
        f"levels x{[s // strides[0] for s in strides]}"
    )
    return shapes


def _kmeans(x: np.ndarray, k: int, iterations: int = 50) -> np.ndarray:
    """k centres of the rows of ``x`` (deterministic: quantile start, Lloyd steps), sorted by size."""
    order = np.argsort(x.sum(axis=1))
    centres = x[order[np.linspace(0, len(x) - 1, k).round().astype(int)]].copy()
    for _ in range(iterations):
        nearest = np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
        for j in range(k):
            if (nearest == j).any():
                centres[j] = x[nearest == j].mean(axis=0)
    return centres[np.argsort(centres.sum(axis=1))]


def _batch_size(size: list[int], n_train: int, step_pixels: int, reasons: dict[str, str]) -> int:
    by_budget = max(2, step_pixels // int(np.prod(size)))
    batch = int(min(by_budget, MAX_BATCH, max(2, n_train // 8)))
    reasons["batch_size"] = (
        f"{batch}: the device budget of {step_pixels:,} pixels per step, at most {MAX_BATCH} and at most 1/8 "
        "of the training images"
    )
    return batch


def _normalization(data: Any, reasons: dict[str, str]) -> list[ChannelNorm]:
    arrays = [c.read() for c in data.train[:STATS_SAMPLES]]
    flat = [np.concatenate([a[ch].ravel() for a in arrays]) for ch in range(data.channels)]
    eight_bit = all(
        float(f.min()) >= 0 and float(f.max()) <= 255 and np.allclose(f[:10000], np.round(f[:10000]))
        for f in flat
    )
    eight_bit = eight_bit and data.dim == 2
    if eight_bit:
        reasons["normalization"] = (
            "8-bit pictures: /255 then z-score with the training images' channel statistics"
        )
        return [
            ChannelNorm(scheme="rgb", mean=float(f.mean()) / 255, std=max(float(f.std()) / 255, 1e-6))
            for f in flat
        ]
    reasons["normalization"] = "per-image z-score (intensities without a fixed scale)"
    return [ChannelNorm(scheme="zscore") for _ in flat]


def _flip_axes(data: Any, reasons: dict[str, str]) -> list[int]:
    lateral = [n for n in data.class_names if any(w in n.lower() for w in LATERAL)]
    if lateral:
        reasons["flip_axes"] = f"none: classes {lateral} name a side, which a flip would swap"
        return []
    reasons["flip_axes"] = "random flips along every axis"
    return list(range(data.dim))


def _shrunk(size: list[int], slower: float, multiple: int, reasons: dict[str, str]) -> list[int]:
    """The input scaled by 1 / sqrt(slower) (at least x MIN_INPUT_SCALE) when even the narrowest
    network's measured step is ``slower`` times the target: the step's cost follows the pixels."""
    scale = max(MIN_INPUT_SCALE, slower**-0.5)
    shrunk = [max(2 * multiple, int(round(s * scale / multiple)) * multiple) for s in size]
    if shrunk != size:
        reasons["input_size"] += (
            f"; then x{scale:.2f} to {shrunk}: the narrowest network's measured step was {slower:.1f} x "
            "the time budget's target"
        )
    return shrunk


def _width(
    data: Any,
    size: list[int],
    batch: int,
    kwargs: dict[str, Any],
    device: str,
    budget: float,
    reasons: dict[str, str],
) -> tuple[dict[str, Any], float]:
    """The widest base_filters whose measured step covers MIN_EPOCHS passes in the time budget, and
    how many times slower than that target the chosen step is (<= 1: it fits)."""
    from medsight.planning.search import StepProbe, search_width

    probe = StepProbe(
        DEFAULT_NETWORK,
        data.dim,
        data.channels,
        len(data.class_names),
        size,
        batch,
        device,
        {k: v for k, v in kwargs.items() if k != "base_filters"},
    )
    target = budget * batch / (MIN_EPOCHS * len(data.train))
    choice = search_width(probe, WIDTHS, target)
    passes = budget / choice.seconds * batch / len(data.train)
    reasons["width"] = (
        f"{choice.describe()}: the step that covers {MIN_EPOCHS} passes over the {len(data.train)} training "
        f"images in {budget:.0f} s; ~{passes:.0f} passes expected"
    )
    return choice.options, choice.seconds / target


__all__ = ["DEFAULT_NETWORK", "DetectPlan", "plan_detection"]
