"""Planning a classifier from the data, sized for the machine it runs on.

The choices, each with its reason in ``plan.reasons``:

1. input size: the median training image size, scaled down (aspect kept) to the device's largest
   side (CPU: 128 px in 2D, 64 voxels in 3D);
2. normalisation per channel: 8-bit pictures -> /255 then dataset z-score; CT -> clip to the 0.5/99.5
   percentiles + dataset z-score; anything else -> per-image z-score;
3. network: ResNet-18 (CIFAR-style stem for inputs of at most 64 px, as MedMNIST's own ResNet-18@28);
   its width is the widest candidate whose *measured* training step lets the time budget cover
   MIN_EPOCHS passes over the training data (all widths when no budget is given: the full width);
4. batch size from the device's pixels-per-step budget;
5. class imbalance: above IMBALANCE_RATIO between the largest and smallest class, a class-weighted loss
   (weights ~ 1/sqrt(frequency)); multi-label: BCE with a per-label positive weight sqrt(neg/pos);
6. decision thresholds: chosen on the validation split after training (binary and multi-label) with
   ``threshold_rule`` (Youden's J where a label's rarer side has enough validation cases, else 0.5;
   see ``medsight.tasks.classify.pipeline.youden_thresholds``) and written back into plan.json.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from medsight.planning.plan import ChannelNorm, PlanBase
from medsight.planning.planner import time_training_step

MAX_SIDE = {"cpu": {2: 128, 3: 64}, "cuda": {2: 224, 3: 96}}
STEP_PIXELS = {"cpu": {2: 128 * 28 * 28 * 4, 3: 8 * 32**3}, "cuda": {2: 64 * 224 * 224, 3: 16 * 64**3}}
MAX_BATCH = 128
MIN_EPOCHS = 30
WIDTHS = (0.25, 0.5, 1.0)
IMBALANCE_RATIO = 1.5
STATS_SAMPLES = 256


class ClassifyPlan(PlanBase):
    """What the classify task trains with. Saved as plan.json; ``--set plan.<field>=...`` overrides."""

    task: Literal["classify"] = "classify"
    dataset: str = ""
    problem: Literal["binary", "multiclass", "multilabel", "ordinal"]
    dim: Literal[2, 3]
    in_channels: int
    class_names: list[str]
    input_size: list[int]
    normalization: list[ChannelNorm]
    network: str = "resnet18"
    network_kwargs: dict[str, Any] = Field(default_factory=dict)
    pretrained: str | None = None  # a local state-dict file to start from (matching tensors only)
    batch_size: int
    lr: float = 1e-3  # used when train.lr is not set
    class_weights: list[float] | None = None  # CE weight per class, or BCE positive weight per label
    augment: bool = True
    flip_axes: list[int] = Field(default_factory=list)  # spatial axes random flips may use
    tta: bool = True
    threshold_rule: Literal["youden", "fixed"] = "youden"
    thresholds: list[float] | None = None  # binary: one; multi-label: one per label; chosen on validation
    reasons: dict[str, str] = Field(default_factory=dict)
    data_summary: dict[str, Any] = Field(default_factory=dict)

    @property
    def out_channels(self) -> int:
        return len(self.class_names)


class _Stats(BaseModel):
    """What planning needs to know about the training images (from a sample of them)."""

    median_shape: list[int]
    eight_bit: bool
    ct_like: bool
    channel_mean: list[float]
    channel_std: list[float]
    p005: list[float]
    p995: list[float]


def image_stats(data: Any, seed: int = 0) -> _Stats:
    """Shapes and intensities of up to STATS_SAMPLES training images."""
    rng = np.random.default_rng(seed)
    train = data.train
    picks = rng.choice(len(train), size=min(STATS_SAMPLES, len(train)), replace=False)
    arrays = [train[int(i)].read() for i in picks]
    shapes = np.array([a.shape[1:] for a in arrays])
    flat = [np.concatenate([a[c].ravel() for a in arrays]) for c in range(arrays[0].shape[0])]
    stored = train[int(picks[0])].array  # in-memory sources keep their dtype
    eight_bit = (stored is not None and stored.dtype == np.uint8) or all(
        float(f.min()) >= 0 and float(f.max()) <= 255 and np.allclose(f, np.round(f)) for f in flat
    )
    return _Stats(
        median_shape=[int(s) for s in np.median(shapes, axis=0)],
        eight_bit=bool(eight_bit),
        ct_like=bool(not eight_bit and min(float(f.min()) for f in flat) < -500),
        channel_mean=[float(f.mean()) for f in flat],
        channel_std=[float(f.std()) for f in flat],
        p005=[float(np.percentile(f, 0.5)) for f in flat],
        p995=[float(np.percentile(f, 99.5)) for f in flat],
    )


def plan_classification(
    data: Any, *, device: str = "cpu", measure: bool = True, time_budget_s: float | None = None
) -> ClassifyPlan:
    """Plan a classifier for a :class:`medsight.data.classification.ClassificationData`."""
    device = "cuda" if str(device).startswith("cuda") else "cpu"
    reasons: dict[str, str] = {}
    stats = image_stats(data)
    size = _input_size(stats.median_shape, MAX_SIDE[device][data.dim], reasons)
    norms = _normalization(stats, reasons)
    batch = _batch_size(size, len(data.train), STEP_PIXELS[device][data.dim], reasons)
    kwargs = {"small_input": max(size) <= 64}
    network = "resnet18"
    width = _width(data, size, batch, kwargs, device, measure, time_budget_s, reasons)
    if width != 1.0:
        kwargs["widen_factor"] = width
    stem = "CIFAR-style stem, as MedMNIST at 28 px" if kwargs["small_input"] else "ImageNet stem"
    reasons["network"] = f"ResNet-18 ({stem})" + (f", width x{width:g}" if width != 1.0 else "")
    weights = _class_weights(data, reasons)
    return ClassifyPlan(
        dataset=data.name,
        problem=data.problem,
        dim=data.dim,
        in_channels=data.channels,
        class_names=list(data.class_names),
        input_size=size,
        normalization=norms,
        network=network,
        network_kwargs=kwargs,
        batch_size=batch,
        class_weights=weights,
        flip_axes=list(range(data.dim)),
        reasons=reasons,
        data_summary=data.describe(),
    )


def _input_size(median: list[int], max_side: int, reasons: dict[str, str]) -> list[int]:
    scale = min(1.0, max_side / max(median))
    size = [max(8, int(round(s * scale))) for s in median]
    reasons["input_size"] = f"median training image size {median}" + (
        f", scaled x{scale:.3f} to the device's largest side {max_side}" if scale < 1 else ""
    )
    return size


def _normalization(stats: _Stats, reasons: dict[str, str]) -> list[ChannelNorm]:
    if stats.eight_bit:
        reasons["normalization"] = (
            "8-bit images: /255 then z-score with the training set's channel statistics"
        )
        return [
            ChannelNorm(scheme="rgb", mean=m / 255.0, std=max(s / 255.0, 1e-6))
            for m, s in zip(stats.channel_mean, stats.channel_std, strict=True)
        ]
    if stats.ct_like:
        reasons["normalization"] = "CT-like intensities: clip to the 0.5/99.5 percentiles + dataset z-score"
        return [
            ChannelNorm(scheme="ct", clip_low=lo, clip_high=hi, mean=m, std=max(s, 1e-6))
            for lo, hi, m, s in zip(
                stats.p005, stats.p995, stats.channel_mean, stats.channel_std, strict=True
            )
        ]
    reasons["normalization"] = "per-image z-score (intensities without a fixed scale, e.g. MR)"
    return [ChannelNorm(scheme="zscore") for _ in stats.channel_mean]


def _batch_size(size: list[int], n_train: int, step_pixels: int, reasons: dict[str, str]) -> int:
    by_budget = max(2, step_pixels // int(np.prod(size)))
    batch = int(min(by_budget, MAX_BATCH, max(2, n_train // 8)))
    reasons["batch_size"] = (
        f"{batch}: the device budget of {step_pixels:,} pixels per step, at most {MAX_BATCH} and at most "
        "1/8 of the training cases (small datasets need several updates per pass)"
    )
    return batch


def _width(
    data: Any,
    size: list[int],
    batch: int,
    kwargs: dict[str, Any],
    device: str,
    measure: bool,
    time_budget_s: float | None,
    reasons: dict[str, str],
) -> float:
    """The widest ResNet-18 whose measured step covers MIN_EPOCHS passes in the time budget."""
    if not measure or not time_budget_s:
        reasons["width"] = "full width (no time budget to size it against)"
        return 1.0
    steps_needed = MIN_EPOCHS * len(data.train) / batch
    chosen, notes = WIDTHS[0], []
    for width in WIDTHS:
        seconds = _measure_step(data, size, batch, {**kwargs, "widen_factor": width}, device)
        epochs = time_budget_s / seconds * batch / len(data.train)
        notes.append(f"x{width:g}: {seconds:.3f} s per step, ~{epochs:.0f} passes")
        if width == WIDTHS[0] or time_budget_s / seconds >= steps_needed:
            chosen = width
    reasons["width"] = (
        f"widest that covers {MIN_EPOCHS} passes over the {len(data.train)} training images in "
        f"{time_budget_s:.0f} s ({'; '.join(notes)})"
    )
    return chosen


def _measure_step(data: Any, size: list[int], batch: int, kwargs: dict[str, Any], device: str) -> float:
    import torch

    from medsight.models import build_model

    net = build_model(
        "resnet18",
        spatial_dims=data.dim,
        in_channels=data.channels,
        out_channels=len(data.class_names),
        patch_size=size,
        **kwargs,
    ).to(device)
    return time_training_step(net, torch.randn(batch, data.channels, *size, device=device))


def _class_weights(data: Any, reasons: dict[str, str]) -> list[float] | None:
    counts = data.class_counts("train").astype(float)
    n = float(len(data.train))
    if data.problem == "multilabel":
        pos = np.maximum(counts, 1.0)
        weights = np.clip(np.sqrt((n - pos) / pos), 1.0, 10.0)
        reasons["class_weights"] = "BCE positive weight per label: sqrt(negatives / positives), in [1, 10]"
        return [round(float(w), 4) for w in weights]
    ratio = counts.max() / max(counts.min(), 1.0)
    if ratio <= IMBALANCE_RATIO:
        reasons["class_weights"] = f"none: classes are balanced (largest / smallest = {ratio:.2f})"
        return None
    weights = 1.0 / np.sqrt(np.maximum(counts, 1.0) / n)
    weights = weights / weights.mean()
    reasons["class_weights"] = (
        f"largest / smallest class = {ratio:.2f} > {IMBALANCE_RATIO}: cross-entropy weighted by "
        "1/sqrt(class frequency) (normalised to mean 1)"
    )
    return [round(float(w), 4) for w in weights]


__all__ = ["ClassifyPlan", "image_stats", "plan_classification"]
