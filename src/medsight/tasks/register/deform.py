"""Known random smooth deformations: the pairs the learned method validates on, ``evaluate`` scores and
the benchmark measures. A cubic B-spline with random control-point displacements (every
``control_mm``), scaled so its largest displacement is ``max_mm`` times a random factor in [0.5, 1];
the moving image is the subject seen through it, and the true answer (the field that maps the fixed
image's points to the moving image's) is its inverse, computed by ITK (``InvertDisplacementField``).

Example:
    >>> rng = np.random.default_rng(0)
    >>> field = random_field(image, max_mm=8.0, control_mm=40.0, rng=rng)  # doctest: +SKIP
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np


def pair_seed(seed: int, *parts: Any) -> int:
    """A stable seed for one pair (the same in every process)."""
    text = "/".join(str(p) for p in (seed, *parts))
    return zlib.crc32(text.encode()) % (2**32)


def random_field(reference: Any, max_mm: float, control_mm: float, rng: np.random.Generator) -> Any:
    """A random smooth displacement field (ITK image, VectorFloat64, mm) on ``reference``'s grid."""
    import SimpleITK as sitk

    dim = reference.GetDimension()
    extent = np.asarray(reference.GetSize()) * np.asarray(reference.GetSpacing())
    mesh = [max(1, int(round(e / control_mm))) for e in extent]
    spline = sitk.BSplineTransformInitializer(reference, mesh, order=3)
    n = len(spline.GetParameters())
    spline.SetParameters(rng.normal(0.0, 1.0, n).tolist())
    field = sitk.TransformToDisplacementField(
        spline,
        sitk.sitkVectorFloat64,
        reference.GetSize(),
        reference.GetOrigin(),
        reference.GetSpacing(),
        reference.GetDirection(),
    )
    arr = sitk.GetArrayFromImage(field)
    peak = float(np.linalg.norm(arr, axis=-1).max()) or 1.0
    scale = max_mm * rng.uniform(0.5, 1.0) / peak
    out = sitk.GetImageFromArray(arr * scale, isVector=True)
    out.CopyInformation(field)
    assert out.GetDimension() == dim
    return out


@dataclass
class KnownPair:
    """A subject and the same subject deformed: the moving image (and labels) and the true field."""

    moving: Any  # SimpleITK image on the subject's grid
    moving_labels: Any  # SimpleITK label image, or None
    truth: Any  # ITK displacement field on the fixed (subject's) grid: fixed point -> moving point


def deform(image: Any, labels: Any, field: Any) -> KnownPair:
    """``moving(p) = image(p + field(p))`` (linear; labels nearest) and the true fixed -> moving field."""
    import SimpleITK as sitk

    dft = sitk.DisplacementFieldTransform(sitk.Image(field))
    moving = sitk.Resample(image, image, dft, sitk.sitkLinear, 0.0, image.GetPixelID())
    moving_labels = None
    if labels is not None:
        moving_labels = sitk.Resample(labels, labels, dft, sitk.sitkNearestNeighbor, 0, labels.GetPixelID())
    truth = sitk.InvertDisplacementField(
        field,
        maximumNumberOfIterations=20,
        maxErrorToleranceThreshold=0.01,
        meanErrorToleranceThreshold=1e-4,
        enforceBoundaryCondition=False,
    )
    return KnownPair(moving, moving_labels, truth)
