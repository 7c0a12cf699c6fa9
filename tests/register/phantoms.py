"""Analytic phantoms for the registration tests: the same smooth, asymmetric function of physical
position sampled on any grid (any spacing, origin, direction), so the true transform between two
samplings is known exactly."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

BLOBS_3D = [
    ((8.0, -6.0, 4.0), 9.0, 1.0),
    ((-10.0, 5.0, -3.0), 7.0, 0.8),
    ((2.0, 12.0, 8.0), 5.0, 0.6),
    ((-4.0, -12.0, -8.0), 6.0, 0.7),
    ((12.0, 8.0, -10.0), 4.0, 0.9),
]


def phantom_value(points: np.ndarray) -> np.ndarray:
    """The phantom at (N, dim) physical points (mm): an ellipsoid with blobs inside."""
    dim = points.shape[1]
    radii = np.array([22.0, 18.0, 15.0])[:dim]
    body = 1.0 / (1.0 + np.exp((np.sqrt(((points / radii) ** 2).sum(1)) - 1.0) * 12.0))
    texture = np.prod([np.sin(points[:, i] / (3.0 + i) + i) for i in range(dim)], axis=0)
    value = (0.4 + 0.25 * texture) * body
    for centre, width, amp in BLOBS_3D:
        c = np.asarray(centre[:dim])
        value = value + amp * np.exp(-((points - c) ** 2).sum(1) / (2 * width**2)) * body
    return value


def sample(
    size: tuple[int, ...],
    spacing: tuple[float, ...],
    direction: np.ndarray | None = None,
    origin: tuple[float, ...] | None = None,
    transform: sitk.Transform | None = None,
) -> sitk.Image:
    """The phantom on a grid centred on the world origin (unless ``origin``); with ``transform`` (a map
    from this image's points to the phantom's points), the phantom seen through it."""
    dim = len(size)
    direction = np.eye(dim) if direction is None else np.asarray(direction, float)
    img = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection(direction.ravel().tolist())
    if origin is None:
        half = direction @ (np.asarray(spacing) * (np.asarray(size) - 1) / 2.0)
        origin = tuple(-half)
    img.SetOrigin([float(o) for o in origin])
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), -1).reshape(-1, dim)
    pts = np.asarray(img.GetOrigin()) + (idx * np.asarray(spacing)) @ direction.T
    if transform is not None:
        pts = np.array([transform.TransformPoint(p.tolist()) for p in pts])
    values = phantom_value(pts).reshape(size)
    out = sitk.GetImageFromArray(np.transpose(values).astype(np.float32))
    out.CopyInformation(img)
    return out


def max_point_error(
    estimated: sitk.Transform, true: sitk.Transform, reference: sitk.Image, step: int = 3
) -> float:
    """The largest |estimated(p) - true(p)| (mm) over every ``step``-th voxel of the central half."""
    size = reference.GetSize()
    ranges = [range(n // 4, 3 * n // 4, step) for n in size]
    errors = []
    for idx in np.stack(np.meshgrid(*ranges, indexing="ij"), -1).reshape(-1, len(size)):
        p = reference.TransformIndexToPhysicalPoint([int(i) for i in idx])
        errors.append(np.linalg.norm(np.subtract(estimated.TransformPoint(p), true.TransformPoint(p))))
    return float(max(errors))
