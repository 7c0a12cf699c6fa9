"""Segmentation preprocessing (done once per case) and its inverse, plus the augmentation preset.

``preprocess`` crops a volume to its non-zero region, resamples it to the plan's spacing and
normalises each channel as planned. ``restore`` takes the network's probabilities back to the
input's original grid, so predictions are written in the input's geometry.

Everything here is numpy/scipy (no torch): the PyTorch predictors and the torch-free ONNX runtime
(``medsight.deploy.runtime``) share these functions, so both preprocess and post-process alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from medsight.errors import DataError
from medsight.io import Image
from medsight.planning.plan import ChannelNorm

if TYPE_CHECKING:
    from medsight.tasks.segment.planning import Plan

log = logging.getLogger(__name__)

LARGE_OUTPUT = 64_000_000  # probability values above which restore() keeps float16


@dataclass
class Preprocessed:
    """One case on the network's grid, and what is needed to map a prediction back."""

    case_id: str
    image: np.ndarray  # float32 (C, *spatial)
    label: np.ndarray | None  # uint8/int16 (1, *spatial) in label values
    original_shape: tuple[int, ...]
    bbox: tuple[slice, ...]  # the crop inside the original grid
    cropped_shape: tuple[int, ...]
    scale: float = 1.0  # photographs: the factor the image was resampled by to the training scale


def nonzero_bbox(array: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of voxels non-zero in any channel of ``(C, *spatial)`` (everything when all zero)."""
    mask = np.any(array != 0, axis=0)
    if not mask.any():
        return tuple(slice(0, s) for s in mask.shape)
    out = []
    for ax in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax)))
        out.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(out)


def resample_shape(
    shape: tuple[int, ...], spacing: tuple[float, ...], target: list[float]
) -> tuple[int, ...]:
    return tuple(max(1, round(s * sp / t)) for s, sp, t in zip(shape, spacing, target, strict=True))


def resize(array: np.ndarray, shape: tuple[int, ...], *, labels: bool = False) -> np.ndarray:
    """Resize ``(C, *spatial)`` to ``shape``: linear for intensities, nearest for label maps.

    The same sampling as ``torch.nn.functional.interpolate`` with ``mode="bilinear"/"trilinear",
    align_corners=False`` (intensities, float32 out) or ``mode="nearest-exact"`` (labels, dtype kept),
    computed separably in numpy.
    """
    arr = np.asarray(array)
    if tuple(arr.shape[1:]) == tuple(shape):
        return array
    if len(shape) != arr.ndim - 1:
        raise DataError(f"resize: target shape {tuple(shape)} does not fit a (C, *spatial) array {arr.shape}")
    out = arr if labels else arr.astype(np.float32, copy=False)
    # shrink first: later axes then interpolate fewer values
    for axis in sorted(range(len(shape)), key=lambda a: shape[a] / arr.shape[a + 1]):
        if out.shape[axis + 1] != shape[axis]:
            out = (_nearest_axis if labels else _linear_axis)(out, axis + 1, int(shape[axis]))
    return out


def _linear_axis(arr: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """Linear interpolation along one axis, half-pixel centres, clamped at the borders."""
    n_in = arr.shape[axis]
    scale = np.float32(n_in / n_out)  # float32 index arithmetic, as torch's kernels
    src = np.maximum((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5), 0)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    view = [1] * arr.ndim
    view[axis] = n_out
    w = np.clip(src - lo, 0, 1).astype(np.float32).reshape(view)
    low = np.take(arr, lo, axis=axis)
    return low + (np.take(arr, hi, axis=axis) - low) * w


def _nearest_axis(arr: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """Nearest-exact sampling along one axis (the source pixel whose extent holds the centre)."""
    n_in = arr.shape[axis]
    centres = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * np.float32(n_in / n_out)
    idx = np.minimum(np.floor(centres).astype(np.int64), n_in - 1)
    return np.take(arr, idx, axis=axis)


def normalize(image: np.ndarray, norms: list[ChannelNorm]) -> np.ndarray:
    """Normalise each channel of ``(C, *spatial)`` as the plan says (float32 out)."""
    if image.shape[0] != len(norms):
        raise DataError(f"image has {image.shape[0]} channels, the plan expects {len(norms)}")
    out = np.empty(image.shape, dtype=np.float32)
    for c, norm in enumerate(norms):
        x = image[c].astype(np.float32)
        if norm.scheme == "ct":
            x = np.clip(x, norm.clip_low, norm.clip_high)
            x = (x - norm.mean) / norm.std
        elif norm.scheme == "rgb":
            x = (x / 255.0 - norm.mean) / norm.std
        elif norm.scheme == "zscore":
            mask = x != 0 if norm.use_mask else np.ones(x.shape, dtype=bool)
            vals = x[mask] if mask.any() else x
            x = (x - vals.mean()) / max(float(vals.std()), 1e-8)
            if norm.use_mask:
                x[~mask] = 0
        out[c] = x
    return out


def preprocess(
    image: Image, label: Image | None, plan: Plan, case_id: str = "", *, log_scale: bool = True
) -> Preprocessed:
    """Crop (3D: to the non-zero region), resample to the plan's spacing and normalise one case.
    ``log_scale=False`` keeps the photo-scale log line quiet (for a second look at an image already
    logged, e.g. the out-of-distribution check's)."""
    if image.ndim != plan.dim:
        raise DataError(f"{case_id}: image is {image.ndim}D, the plan was made for {plan.dim}D data")
    if image.channels != plan.in_channels:
        raise DataError(
            f"{case_id}: image has {image.channels} channels, the plan expects {plan.in_channels}"
        )
    arr = image.array
    bbox = nonzero_bbox(arr) if plan.dim == 3 else tuple(slice(0, s) for s in image.shape)
    cropped = arr[(slice(None), *bbox)]
    scale = _photo_scale(cropped, plan, case_id, log_scale)
    spacing = tuple(s * scale for s in image.spacing)
    target = resample_shape(cropped.shape[1:], spacing, plan.target_spacing)
    norm = normalize(cropped, plan.normalization)
    img = resize(norm, target).astype(np.float32, copy=False)
    lab = None
    if label is not None:
        lab_crop = label.array[(slice(None), *bbox)]
        lab = resize(lab_crop.astype(np.int16), target, labels=True)
        lab = lab.astype(np.uint8) if lab.max(initial=0) < 256 and lab.min(initial=0) >= 0 else lab
    return Preprocessed(case_id, img, lab, image.shape, bbox, tuple(cropped.shape[1:]), scale)


def _photo_scale(array: np.ndarray, plan: Plan, case_id: str, log_scale: bool) -> float:
    """The plan's photograph scale factor for one image (1 without one), with a log line saying what
    was done when it resamples the image noticeably."""
    if plan.photo_scale is None:
        return 1.0
    from medsight.transforms.photo_scale import scale_factor

    scale, size = scale_factor(array, plan.photo_scale)
    if not log_scale:
        return scale
    method, reference = plan.photo_scale.method, plan.photo_scale.reference_px
    if size is None:
        log.warning("%s: no field of view found; predicted at the image's own scale", case_id or "image")
    elif abs(scale - 1) > 0.05:
        log.info(
            "%s: %s %.0f px, resampled x%.2f to the training scale (%.0f px)",
            case_id or "image",
            method,
            size,
            scale,
            reference,
        )
    return scale


def restore(probabilities: np.ndarray, pre: Preprocessed, *, background: float = 1.0) -> np.ndarray:
    """Probabilities ``(C, *net_grid)`` -> ``(C, *original)``: resize to the crop, pad the rest.

    Outside the crop, channel 0 gets ``background`` (1 for softmax outputs, 0 for sigmoid regions).
    Channels are resized one at a time into a float16 buffer when the full map is large
    (a CT-sized 512x512x400 volume), so C float32 copies of it never exist together.
    """
    probs = np.asarray(probabilities)
    n_full = probs.shape[0] * int(np.prod(pre.original_shape))
    dtype = np.float32 if n_full <= LARGE_OUTPUT else np.float16
    full = np.zeros((probs.shape[0], *pre.original_shape), dtype=dtype)
    full[0] = background
    for c in range(probs.shape[0]):
        channel = probs[c : c + 1].astype(np.float32, copy=False)
        full[(slice(c, c + 1), *pre.bbox)] = resize(channel, pre.cropped_shape)
    return full


def to_label_map(
    probabilities: np.ndarray, label_values: list[int], regions: dict[str, list[int]] | None
) -> np.ndarray:
    """Probabilities ``(C, *spatial)`` -> a label map in label values: nested regions (sigmoid > 0.5)
    or the argmax class's value (uint8, or int16 for values above 255)."""
    if regions:
        return regions_to_labels(probabilities > 0.5, regions)
    out = np.asarray(label_values, dtype=np.int64)[np.argmax(probabilities, axis=0)]
    return out.astype(np.uint8 if out.max(initial=0) < 256 else np.int16)


def largest_components(labels: np.ndarray, values: list[int]) -> np.ndarray:
    """Keep only the largest connected component of each foreground value."""
    from scipy import ndimage

    out = labels.copy()
    for v in values:
        comp, n = ndimage.label(labels == v)
        if n > 1:
            sizes = ndimage.sum_labels(np.ones_like(comp), comp, index=range(1, n + 1))
            out[(comp > 0) & (comp != int(np.argmax(sizes)) + 1)] = 0
    return out


def regions_to_labels(masks: np.ndarray, regions: dict[str, list[int]]) -> np.ndarray:
    """Binary region masks ``(R, *spatial)`` -> a label map, for nested regions (BraTS-style).

    Regions are painted from the largest label set to the smallest; each paints the value that it
    has and the next smaller region lacks (WT [1,2,4] -> 2, TC [1,4] -> 1, ET [4] -> 4).
    """
    order = sorted(range(len(regions)), key=lambda i: -len(list(regions.values())[i]))
    sets = [set(list(regions.values())[i]) for i in order]
    out = np.zeros(masks.shape[1:], dtype=np.uint8)
    for k, idx in enumerate(order):
        rest = sets[k] - (sets[k + 1] if k + 1 < len(sets) else set())
        value = min(rest) if rest else min(sets[k])
        out[masks[idx] > 0] = value
    return out


def labels_to_regions(label: np.ndarray, regions: dict[str, list[int]]) -> np.ndarray:
    """A label map ``(1, *spatial)`` -> binary region targets ``(R, *spatial)`` (float32)."""
    return np.concatenate([np.isin(label, values) for values in regions.values()], axis=0).astype(np.float32)


def is_photograph(plan: Plan) -> bool:
    """2D colour photographs (every channel RGB-normalised): fundus, dermoscopy, endoscopy."""
    return plan.dim == 2 and all(n.scheme == "rgb" for n in plan.normalization)


def augmentation_summary(plan: Plan) -> str:
    """What :func:`augmentation` does for ``plan``, for its reasons in plan.json."""
    if not plan.augment:
        return "no augmentation"
    text = (
        f"strength {plan.augment:g}: nnU-Net-like rotation, scale and aspect, flips, noise, blur, "
        "brightness, contrast and gamma"
    )
    if plan.camera_augment:
        text += (
            "; another camera's look: per-channel colour gains and offsets (white balance), stronger "
            "gamma, blur and sharpening"
        )
    return text


def augmentation(plan: Plan, seed: int = 0) -> Any:
    """nnU-Net-like augmentation from MONAI, applied to ``{"image", "label"}`` patches (plain tensors),
    with another camera's look when ``plan.camera_augment``; ranges scale with ``plan.augment``."""
    from monai import transforms as T

    keys = ["image", "label"]
    k = float(plan.augment)
    spatial_axes = list(range(plan.dim))
    ops = [
        T.RandAffined(
            keys,
            prob=0.2,
            rotate_range=[0.26 * k] * (1 if plan.dim == 2 else 3),
            scale_range=[0.15 * k] * plan.dim,
            mode=("bilinear", "nearest"),
            padding_mode="reflection",
        ),
        T.RandGaussianNoised(["image"], prob=0.1, std=0.1 * k),
        T.RandGaussianSmoothd(
            ["image"], prob=0.1, sigma_x=(0.5 * k, k), sigma_y=(0.5 * k, k), sigma_z=(0.5 * k, k)
        ),
        T.RandScaleIntensityd(["image"], factors=0.25 * k, prob=0.15),
        T.RandShiftIntensityd(["image"], offsets=0.1 * k, prob=0.15),
        T.RandAdjustContrastd(["image"], gamma=(max(0.3, 1 - 0.3 * k), 1 + 0.5 * k), prob=0.15),
    ]
    if plan.camera_augment:
        ops += _photograph_ops(k)
    ops += [T.RandFlipd(keys, prob=0.5, spatial_axis=a) for a in spatial_axes]
    if plan.dim == 2 and plan.patch_size[0] == plan.patch_size[1]:
        ops.append(T.RandRotate90d(keys, prob=0.5, spatial_axes=(0, 1)))
    compose = T.Compose(ops)
    compose.set_random_state(seed=seed)
    return compose


def _photograph_ops(k: float) -> list[Any]:
    """Another camera's look on normalised RGB patches: white balance (per-channel gain and offset),
    gamma, softness and sharpening."""
    from monai import transforms as T

    return [
        T.RandScaleIntensityd(["image"], factors=0.2 * k, prob=0.3, channel_wise=True),
        T.RandShiftIntensityd(["image"], offsets=0.2 * k, prob=0.3, channel_wise=True),
        T.RandAdjustContrastd(["image"], gamma=(max(0.3, 1 - 0.4 * k), 1 + 0.8 * k), prob=0.2),
        T.RandGaussianSmoothd(["image"], prob=0.1, sigma_x=(0.5 * k, 1.5 * k), sigma_y=(0.5 * k, 1.5 * k)),
        T.RandGaussianSharpend(["image"], prob=0.1),
    ]
