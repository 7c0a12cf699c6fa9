"""The classification plan, and planning a classifier from the data, sized for the machine it runs on.

The choices, each with its reason in ``plan.reasons``:

1. input size: the median training image size, scaled down (aspect kept) to the device's largest
   side (CPU: 128 px in 2D, 64 voxels in 3D);
2. normalisation per channel: 8-bit pictures -> /255 then dataset z-score; CT -> clip to the 0.5/99.5
   percentiles + dataset z-score; anything else -> per-image z-score;
3. network: ResNet-18 (CIFAR-style stem for inputs of at most 64 px, as MedMNIST's own ResNet-18@28),
   or the one ``overrides`` name; its width is the widest candidate whose *measured* training step
   lets the time budget cover MIN_EPOCHS passes over the training data (no time budget: the
   network's own width);
4. batch size from the device's pixels-per-step budget;
5. class imbalance: above IMBALANCE_RATIO between the largest and smallest class, a class-weighted loss
   (weights ~ 1/sqrt(frequency)); multi-label: BCE with a per-label positive weight sqrt(neg/pos);
6. decision thresholds: chosen on the validation split after training (binary and multi-label) with
   ``threshold_rule`` (Youden's J where a label's rarer side has enough validation cases, else 0.5;
   see ``medsight.tasks.classify.pipeline.youden_thresholds``) and written back into plan.json.

Importing this module is cheap (no torch): the plan model is what a run's plan.json loads into.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from medsight.planning.budget import device_budget
from medsight.planning.plan import ChannelNorm, PlanBase
from medsight.planning.search import StepProbe, search_width

DEFAULT_NETWORK = "resnet18"
MAX_SIDE = {"cpu": {2: 128, 3: 64}, "cuda": {2: 224, 3: 96}}
STEP_PIXELS = {"cpu": {2: 128 * 28 * 28 * 4, 3: 8 * 32**3}, "cuda": {2: 64 * 224 * 224, 3: 16 * 64**3}}
MAX_BATCH = 128
MIN_EPOCHS = 30
WIDTHS = (0.25, 0.5, 1.0)  # candidate values of the network's width option (ResNet: widen_factor)
IMBALANCE_RATIO = 1.5
STATS_SAMPLES = 256


class ClassifyPlan(PlanBase):
    """What the classify task trains with. Saved as plan.json; ``--set plan.<field>=...`` overrides."""

    task: str = "classify"
    problem: Literal["binary", "multiclass", "multilabel", "ordinal"]
    input_size: list[int]
    network: str = DEFAULT_NETWORK
    pretrained: str | None = None  # a local state-dict file to start from (matching tensors only)
    lr: float = 1e-3  # used when train.lr is not set
    class_weights: list[float] | None = None  # CE weight per class, or BCE positive weight per label
    flip_axes: list[int] = Field(default_factory=list)  # spatial axes random flips may use
    threshold_rule: Literal["youden", "fixed"] = "youden"
    thresholds: list[float] | None = None  # binary: one; multi-label: one per label; chosen on validation
    data_summary: dict[str, Any] = Field(default_factory=dict)


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
    data: Any,
    *,
    device: str = "cpu",
    measure: bool = True,
    time_budget_s: float | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ClassifyPlan:
    """Plan a classifier for a :class:`medsight.data.classification.ClassificationData`.

    Args:
        data: the training data.
        device: the device that will train ("cpu", "cuda[:n]").
        measure: time candidate widths on this machine (with a time budget only).
        time_budget_s: the training wall-clock budget, when known: the width is sized against it.
        overrides: the user's ``plan.<field>`` values, applied to the returned plan. ``network`` and
            ``network_kwargs`` are planned for: the measured width is that of the chosen network
            (``network_kwargs`` given: timed as given, not sized).

    Raises:
        ConfigError: an override names no plan field, or has an invalid value.
    """
    overrides = dict(overrides or {})
    ClassifyPlan.check_override_names(overrides)
    device = device_budget(device).device
    network = str(overrides.get("network", DEFAULT_NETWORK))
    reasons: dict[str, str] = {}
    stats = image_stats(data)
    size = _input_size(stats.median_shape, MAX_SIDE[device][data.dim], reasons)
    norms = _normalization(stats, reasons)
    batch = _batch_size(size, len(data.train), STEP_PIXELS[device][data.dim], reasons)
    kwargs = _network_kwargs(network, size, overrides.get("network_kwargs"))
    probe = StepProbe(network, data.dim, data.channels, len(data.class_names), size, batch, device, kwargs)
    sized = "network_kwargs" not in overrides
    width = _width(data, probe, measure, time_budget_s, sized, reasons)
    reasons["network"] = _network_reason(network, kwargs, width)
    return ClassifyPlan(
        dataset=data.name,
        problem=data.problem,
        dim=data.dim,
        in_channels=data.channels,
        class_names=list(data.class_names),
        input_size=size,
        normalization=norms,
        network=network,
        network_kwargs={**kwargs, **width},
        batch_size=batch,
        class_weights=_class_weights(data, reasons),
        flip_axes=list(range(data.dim)),
        reasons=reasons,
        data_summary=data.describe(),
    ).with_overrides(overrides)


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


def _network_kwargs(network: str, size: list[int], user_kwargs: Any) -> dict[str, Any]:
    """The network's options, its width aside: the user's when given, else the planned ones."""
    if user_kwargs is not None:
        return dict(user_kwargs)
    if network == DEFAULT_NETWORK:
        from medsight.models.classification import SMALL_INPUT_MAX

        return {"small_input": max(size) <= SMALL_INPUT_MAX}
    return {}


def _width(
    data: Any,
    probe: StepProbe,
    measure: bool,
    time_budget_s: float | None,
    sized: bool,
    reasons: dict[str, str],
) -> dict[str, Any]:
    """The width option of the widest network whose measured step covers MIN_EPOCHS passes in the time
    budget (nothing: the network's own width)."""
    if not measure or not time_budget_s:
        reasons["width"] = "the network's own width (no time budget to size it against)"
        return {}
    n_train = len(data.train)
    target = time_budget_s * probe.batch_size / (MIN_EPOCHS * n_train)  # seconds per step for the passes
    choice = search_width(probe, WIDTHS if sized else (), target)
    passes = time_budget_s / choice.seconds * probe.batch_size / n_train
    reasons["width"] = (
        f"{choice.describe()}: the step that covers {MIN_EPOCHS} passes over the {n_train} training "
        f"images in {time_budget_s:.0f} s; ~{passes:.0f} passes expected"
    )
    return choice.options


def _network_reason(network: str, kwargs: dict[str, Any], width: dict[str, Any]) -> str:
    if network != DEFAULT_NETWORK:
        return network
    stem = "CIFAR-style stem, as MedMNIST at 28 px" if kwargs.get("small_input") else "ImageNet stem"
    factor = width.get("widen_factor", 1.0)
    return f"ResNet-18 ({stem})" + (f", width x{factor:g}" if factor != 1.0 else "")


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


__all__ = ["DEFAULT_NETWORK", "ClassifyPlan", "image_stats", "plan_classification"]
