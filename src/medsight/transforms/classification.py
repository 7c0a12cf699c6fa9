"""Classification inputs: one image -> the network's input (normalised, resized), and batched random
augmentation on tensors (flips, a small affine, intensity jitter), applied to a whole batch at once.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from medsight.transforms.segmentation import normalize, resize

if TYPE_CHECKING:
    import torch

    from medsight.tasks.classify.planning import ClassifyPlan

MAX_ROTATION = math.radians(15)
SCALE_RANGE = 0.1  # zoom in [0.9, 1.1]
SHIFT_RANGE = 0.08  # of the image size
INTENSITY_RANGE = 0.1  # multiplicative and additive jitter in normalised units


def to_input(image: np.ndarray, plan: ClassifyPlan) -> torch.Tensor:
    """``(C, *spatial)`` raw intensities -> the plan's normalised ``(C, *input_size)`` float32 tensor."""
    import torch

    return torch.from_numpy(input_array(image, plan))


def input_array(image: np.ndarray, plan: ClassifyPlan) -> np.ndarray:
    """``to_input`` in numpy (float32), shared with the torch-free ONNX runtime."""
    from medsight.errors import DataError

    if image.shape[0] != plan.in_channels or image.ndim - 1 != plan.dim:
        raise DataError(
            f"image of shape {tuple(image.shape)} (channels first): the model expects "
            f"{plan.in_channels} channel(s) of a {plan.dim}D image"
        )
    normalised = normalize(image, plan.normalization)
    return np.ascontiguousarray(resize(normalised, tuple(plan.input_size)), dtype=np.float32)


def augment_batch(x: torch.Tensor, flip_axes: list[int], generator: torch.Generator) -> torch.Tensor:
    """Random flips along ``flip_axes`` (spatial axes), a random affine and intensity jitter per sample."""
    import torch
    import torch.nn.functional as F

    b, dim = x.shape[0], x.dim() - 2
    view = (b,) + (1,) * (dim + 1)
    for axis in flip_axes:
        flip = (torch.rand(b, generator=generator) < 0.5).view(view)
        x = torch.where(flip, x.flip(axis + 2), x)
    grid = F.affine_grid(_random_affine(b, dim, generator), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    scale = 1 + (torch.rand(view, generator=generator) * 2 - 1) * INTENSITY_RANGE
    shift = (torch.rand(view, generator=generator) * 2 - 1) * INTENSITY_RANGE
    return x * scale.to(x.dtype) + shift.to(x.dtype)


def _random_affine(b: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """(B, dim, dim+1) sampling matrices: rotation (about the last axis in 3D), zoom and shift."""
    import torch

    angle = (torch.rand(b, generator=generator) * 2 - 1) * MAX_ROTATION
    zoom = 1 + (torch.rand(b, generator=generator) * 2 - 1) * SCALE_RANGE
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.zeros(b, dim, dim + 1)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    if dim == 3:
        theta[:, 2, 2] = 1 / zoom
    theta[:, :, dim] = (torch.rand(b, dim, generator=generator) * 2 - 1) * 2 * SHIFT_RANGE
    return theta
