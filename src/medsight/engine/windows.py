"""Sliding-window geometry in numpy: where the windows go, how they are weighted, which flips TTA uses.

Torch-free, so the PyTorch sliding window (``medsight.engine.inference``) and the ONNX runtime
(``medsight.deploy.runtime``) place and blend windows identically. The windows are MONAI's
(``monai.data.utils.dense_patch_slices`` with ``sliding_window_inference``'s scan interval) and the
Gaussian is MONAI's ``compute_importance_map``; tests check both against MONAI.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medsight.errors import ConfigError


@dataclass(frozen=True)
class WindowPlan:
    """What the sliding window needs to know about one (padded) volume."""

    roi: tuple[int, ...]
    size: tuple[int, ...]  # padded spatial size
    pad: list[int]  # F.pad order (last axis first)
    crop: tuple[slice, ...]  # the original image inside the padded one, per spatial axis
    groups: list[tuple[int, list[tuple[slice, ...]]]]  # (last-axis start, windows) in start order

    @property
    def windows(self) -> list[tuple[slice, ...]]:
        """Every window, in the order they are predicted."""
        return [w for _, ws in self.groups for w in ws]

    @property
    def pad_width(self) -> list[tuple[int, int]]:
        """``np.pad`` widths (before, after) per spatial axis."""
        return [(c.start, n - c.stop) for c, n in zip(self.crop, self.size, strict=True)]


def dense_windows(
    size: Sequence[int], roi: Sequence[int], interval: Sequence[int]
) -> list[tuple[slice, ...]]:
    """Every window of ``roi`` over ``size`` stepping by ``interval``, the last flush with the end
    (MONAI's ``dense_patch_slices``, first axis slowest)."""
    starts = []
    for n, r, step in zip(size, roi, interval, strict=True):
        count = next((d + 1 for d in range(math.ceil(n / step)) if d * step + r >= n), 1)
        starts.append([i * step - max(i * step + r - n, 0) for i in range(count)])
    corners = itertools.product(*starts)
    return [tuple(slice(s, s + r) for s, r in zip(start, roi, strict=True)) for start in corners]


def plan_windows(spatial: Sequence[int], patch_size: Sequence[int], overlap: float) -> WindowPlan:
    """Pad (centred) to at least the patch, then tile with MONAI's scan interval."""
    roi = tuple(int(p) for p in patch_size)
    size = tuple(max(s, r) for s, r in zip(spatial, roi, strict=True))
    before = [max(r - s, 0) // 2 for s, r in zip(spatial, roi, strict=True)]
    crop = tuple(slice(b, b + s) for b, s in zip(before, spatial, strict=True))
    pad: list[int] = []
    for b, s, n in zip(reversed(before), reversed(spatial), reversed(size), strict=True):
        pad += [b, n - s - b]
    # MONAI's scan interval: a whole patch along axes the patch fills, else (1 - overlap) * patch
    interval = [r if r == n else max(int(r * (1 - overlap)), 1) for r, n in zip(roi, size, strict=True)]
    windows = sorted(dense_windows(size, roi, interval), key=lambda w: w[-1].start)  # stable
    groups = [(start, list(ws)) for start, ws in itertools.groupby(windows, key=lambda w: w[-1].start)]
    return WindowPlan(roi, size, pad, crop, groups)


def flip_sets(tta_flips: bool | Sequence[Sequence[int]] | None, spatial_dims: int) -> list[tuple[int, ...]]:
    """Spatial axes to flip for each TTA pass (the un-flipped pass is always included)."""
    if tta_flips is False or tta_flips is None:
        return [()]
    if tta_flips is True:
        axes = range(spatial_dims)
        return [()] + [c for n in range(1, spatial_dims + 1) for c in itertools.combinations(axes, n)]
    sets: list[tuple[int, ...]] = [()]
    for flip in tta_flips:
        flip = tuple(sorted({int(a) for a in flip}))
        if any(a < 0 or a >= spatial_dims for a in flip):
            raise ConfigError(f"tta_flips: spatial axes must be in [0, {spatial_dims - 1}], got {flip}")
        if flip not in sets:
            sets.append(flip)
    return sets


def importance_map(
    patch_size: Sequence[int], mode: str = "gaussian", sigma_scale: float = 0.125
) -> np.ndarray:
    """Blending weights of one window, float32 (MONAI's ``compute_importance_map``)."""
    roi = tuple(int(p) for p in patch_size)
    if mode == "constant":
        return np.ones(roi, dtype=np.float32)
    if mode != "gaussian":
        raise ConfigError(f"mode must be 'gaussian' or 'constant', got {mode!r}")
    weight = np.ones((), dtype=np.float32)
    for n in roi:
        x = np.arange(-(n - 1) / 2.0, (n - 1) / 2.0 + 1, dtype=np.float32)
        g = np.exp(x**2 / np.float32(-2 * (n * sigma_scale) ** 2)).astype(np.float32)
        weight = weight[..., None] * g
    return np.maximum(weight, max(float(weight.min()), 1e-3)).astype(np.float32)
