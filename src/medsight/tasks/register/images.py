"""The two sides of a registration pair, read and checked, in physical space (SimpleITK, LPS).

Every image is read with :func:`medsight.io.read_image` (any format medsight reads) and converted to a
SimpleITK float32 image with its spacing, origin and direction, so headers with different spacing,
origin, direction or orientation are registered in physical space. Bad input is a
:class:`~medsight.errors.DataError` naming the file and the field; fields of view that do not overlap are
a warning with the overlap in mm (the affine step first aligns the images' centres of mass).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import DataError
from medsight.io import Image

log = logging.getLogger(__name__)
GEOMETRY_ATOL = 1e-3  # mm (and direction cosines) within which a label map shares its image's geometry


@dataclass
class Side:
    """One image of a pair (fixed or moving) and its optional label map."""

    name: str  # "fixed" or "moving": what error messages call it
    source: str  # the file, for messages
    image: Image  # as read (original geometry and format)
    sitk: Any  # SimpleITK float32 scalar image, same geometry
    labels: Image | None = None
    labels_sitk: Any = None

    @property
    def dim(self) -> int:
        return self.image.ndim


def to_sitk_float(image: Image) -> Any:
    """A one-channel :class:`Image` as a SimpleITK float32 image with its geometry."""
    import SimpleITK as sitk

    from medsight.io.itk import to_sitk

    arr = image.array[:1].astype(np.float32)
    return sitk.Cast(to_sitk(image.with_array(arr)), sitk.sitkFloat32)


def from_sitk(img: Any, like: Image) -> Image:
    """A SimpleITK scalar image on ``like``'s grid as an :class:`Image` with ``like``'s geometry."""
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(img)
    return like.with_array(np.transpose(arr)[None])


def load_side(source: str | Path | Image, name: str, labels: str | Path | Image | None = None) -> Side:
    """Read and check one side of a pair (``name``: ``fixed`` or ``moving``).

    Raises:
        DataError: unreadable, more than one channel, NaN/Inf, empty or constant; labels whose shape or
            geometry differs from the image, or that are not integers.
    """
    image, where = _read(source, name)
    if image.channels != 1:
        raise DataError(f"{where}: {name} image: expected one channel, found {image.channels}")
    arr = image.array[0]
    bad = int(np.count_nonzero(~np.isfinite(arr))) if np.issubdtype(arr.dtype, np.inexact) else 0
    if bad:
        raise DataError(f"{where}: {name} image: {bad} NaN/Inf voxel(s); expected finite intensities")
    if arr.size == 0 or float(arr.max()) == float(arr.min()):
        value = float(arr.flat[0]) if arr.size else None
        raise DataError(
            f"{where}: {name} image: the volume is empty or constant (every voxel {value}); "
            "registration needs image contrast"
        )
    side = Side(name, where, image, to_sitk_float(image))
    if labels is not None:
        side.labels, side.labels_sitk = _labels(labels, side)
    return side


def _read(source: str | Path | Image, name: str) -> tuple[Image, str]:
    if isinstance(source, Image):
        return source, str(source.meta.get("source", f"<{name} image>"))
    from medsight.io import read_image

    return read_image(source), str(source)


def _labels(source: str | Path | Image, side: Side) -> tuple[Image, Any]:
    import SimpleITK as sitk

    from medsight.io.itk import to_sitk

    labels, where = _read(source, f"{side.name} labels")
    if labels.shape != side.image.shape:
        raise DataError(
            f"{where}: {side.name} labels: shape {labels.shape} does not match the {side.name} image "
            f"{side.source} {side.image.shape}"
        )
    for field in ("spacing", "origin"):
        a, b = np.asarray(getattr(labels, field)), np.asarray(getattr(side.image, field))
        if not np.allclose(a, b, atol=GEOMETRY_ATOL):
            raise DataError(
                f"{where}: {side.name} labels: {field} {tuple(a.round(4))} does not match the "
                f"{side.name} image {side.source} {tuple(b.round(4))}"
            )
    if not np.allclose(labels.direction, side.image.direction, atol=GEOMETRY_ATOL):
        raise DataError(
            f"{where}: {side.name} labels: direction does not match the {side.name} image {side.source}"
        )
    arr = labels.array[0]
    if np.issubdtype(arr.dtype, np.inexact):
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
            raise DataError(f"{where}: {side.name} labels: expected integer label values, found fractions")
    arr = arr.astype(np.int32)
    # the label map takes the image's exact geometry (within GEOMETRY_ATOL of it)
    lab = side.image.with_array(arr[None])
    return labels, sitk.Cast(to_sitk(lab), sitk.sitkInt32)


def check_pair(fixed: Side, moving: Side) -> dict[str, float]:
    """Check the two sides fit together; return their field-of-view overlap (mm per world axis).

    Raises:
        DataError: different dimensionality.

    Warns:
        UserWarning: the fields of view do not overlap (the overlap in mm per axis is in the message).
    """
    if fixed.dim != moving.dim:
        raise DataError(
            f"{moving.source}: moving image: dimensionality {moving.dim}D does not match the fixed image "
            f"{fixed.source} ({fixed.dim}D)"
        )
    lo_f, hi_f = physical_bounds(fixed.sitk)
    lo_m, hi_m = physical_bounds(moving.sitk)
    overlap = np.clip(np.minimum(hi_f, hi_m) - np.maximum(lo_f, lo_m), 0, None)
    axes = "xyz"[: fixed.dim]
    out = {f"overlap_mm_{a}": round(float(v), 2) for a, v in zip(axes, overlap, strict=True)}
    if (overlap <= 0).any():
        text = ", ".join(f"{a} {v:.1f} mm" for a, v in zip(axes, overlap, strict=True))
        message = (
            f"{moving.source}: the moving image's field of view does not overlap the fixed image "
            f"{fixed.source} (overlap {text}); the affine step aligns their centres of mass first"
        )
        log.warning(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    return out


def physical_bounds(img: Any) -> tuple[np.ndarray, np.ndarray]:
    """The (lower, upper) corners (mm, world axes) of the box holding every voxel centre of ``img``."""
    import itertools

    size = img.GetSize()
    corners = [
        img.TransformContinuousIndexToPhysicalPoint([float(c) for c in idx])
        for idx in itertools.product(*[(0, n - 1) for n in size])
    ]
    pts = np.asarray(corners)
    return pts.min(axis=0), pts.max(axis=0)


def working_image(img: Any, spacing: float | None) -> Any:
    """``img`` resampled to at least ``spacing`` mm per axis (Gaussian anti-aliasing), same extent and
    direction; unchanged when ``spacing`` is None or finer than the image's own."""
    import SimpleITK as sitk

    if spacing is None:
        return img
    old = np.asarray(img.GetSpacing())
    new = np.maximum(old, float(spacing))
    if np.allclose(new, old):
        return img
    size = [max(2, int(round(n * o / s))) for n, o, s in zip(img.GetSize(), old, new, strict=True)]
    sigma = [float(max(0.0, (s * s - o * o)) ** 0.5 / 2.0) for o, s in zip(old, new, strict=True)]
    smooth = sitk.SmoothingRecursiveGaussian(img, sigma) if max(sigma) > 0 else img
    origin = np.asarray(img.GetOrigin()) + np.asarray(img.GetDirection()).reshape(len(old), -1) @ (
        (new - old) / 2.0
    )
    return sitk.Resample(
        smooth,
        size,
        sitk.Transform(),
        sitk.sitkLinear,
        origin.tolist(),
        new.tolist(),
        img.GetDirection(),
        0.0,
        sitk.sitkFloat32,
    )
