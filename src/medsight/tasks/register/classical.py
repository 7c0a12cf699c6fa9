"""Classical registration in physical space with SimpleITK: affine (Mattes mutual information, rigid
then affine, multi-resolution), affine + B-spline (MI, L-BFGS-B) and diffeomorphic Demons after the
affine step. Each method takes SimpleITK float32 images (at the working resolution) and returns one
transform mapping fixed points (mm) to moving points (mm), ITK's convention.

Example:
    >>> t = affine(fixed_img, moving_img)  # doctest: +SKIP
    >>> sitk.Resample(moving_img, fixed_img, t)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from medsight.errors import ConfigError

CLASSICAL = ("affine", "bspline", "demons")


@dataclass(frozen=True)
class ClassicalSettings:
    """Iterations and scales of the classical methods (the defaults suit brain MRI at 2-3 mm)."""

    bins: int = 64
    sampling: float = 0.25  # fraction of fixed voxels sampled by the MI metric
    affine_iterations: int = 200
    shrink: tuple[int, ...] = (4, 2, 1)
    smooth_mm: tuple[float, ...] = (4.0, 2.0, 0.0)
    bspline_grid_mm: float = 30.0  # B-spline control-point spacing
    bspline_iterations: int = 40
    demons_iterations: tuple[int, ...] = (60, 40, 20)  # per level, coarse to fine
    demons_sigma: float = 1.5  # Gaussian smoothing of the field (voxels)
    seed: int = 0
    threads: int = 1  # ITK threads: 1 gives repeatable results (its thread pool sums in a varying order)


def _pinned_threads(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``method`` with ITK's global thread count set to the settings' ``threads`` (restored after).
    The registration's own ``SetNumberOfThreads`` does not reach every filter it runs: with it at 1, the
    affine result of one pair still changed with the global count (1 or 8 against 2 or 4 threads), and
    a CLI and an API prediction in one process disagreed by 0.07 mm."""

    @functools.wraps(method)
    def pinned(fixed: Any, moving: Any, settings: ClassicalSettings | None = None, **kw: Any) -> Any:
        import SimpleITK as sitk

        s = settings or ClassicalSettings()
        before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(s.threads)
        try:
            return method(fixed, moving, s, **kw)
        finally:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)

    return pinned


def _shrink(fixed: Any, s: ClassicalSettings) -> tuple[list[int], list[float]]:
    """Shrink factors and smoothing sigmas that keep every level at least 16 voxels on each side."""
    smallest = min(fixed.GetSize())
    shrink, smooth = [], []
    for f, m in zip(s.shrink, s.smooth_mm, strict=True):
        if smallest // f >= 16 or f == 1:
            shrink.append(f)
            smooth.append(m)
    return shrink, smooth


def _method(fixed: Any, s: ClassicalSettings, iterations: int, step: float = 2.0, levels: int = 3) -> Any:
    import SimpleITK as sitk

    reg = sitk.ImageRegistrationMethod()
    reg.SetNumberOfThreads(s.threads)
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=s.bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(s.sampling, s.seed + 1)  # ITK: seed 0 means the wall clock
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=step,
        minStep=1e-4,
        numberOfIterations=iterations,
        relaxationFactor=0.6,
        gradientMagnitudeTolerance=1e-6,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    shrink, smooth = _shrink(fixed, s)
    reg.SetShrinkFactorsPerLevel(shrink[-levels:])
    reg.SetSmoothingSigmasPerLevel(smooth[-levels:])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return reg


@_pinned_threads
def affine(fixed: Any, moving: Any, settings: ClassicalSettings | None = None) -> Any:
    """A rigid then an affine stage (Mattes MI), initialised by the centres of mass.

    Returns:
        A ``sitk.AffineTransform`` from fixed to moving physical points.
    """
    import SimpleITK as sitk

    s = settings or ClassicalSettings()
    dim = fixed.GetDimension()
    rigid = sitk.Euler3DTransform() if dim == 3 else sitk.Euler2DTransform()
    init = sitk.CenteredTransformInitializer(
        fixed, moving, rigid, sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    reg = _method(fixed, s, s.affine_iterations)
    reg.SetInitialTransform(init, inPlace=True)
    reg.Execute(fixed, moving)
    full = sitk.AffineTransform(dim)
    full.SetCenter(init.GetCenter())
    full.SetMatrix(init.GetMatrix())
    full.SetTranslation(init.GetTranslation())
    reg = _method(fixed, s, s.affine_iterations, step=0.5, levels=2)  # small steps: 12 parameters
    reg.SetInitialTransform(full, inPlace=True)
    reg.Execute(fixed, moving)
    return full


@_pinned_threads
def bspline(fixed: Any, moving: Any, settings: ClassicalSettings | None = None, pre: Any = None) -> Any:
    """The affine step, then a cubic B-spline (control points every ``bspline_grid_mm``; MI, L-BFGS-B).

    Returns:
        A composite transform (the B-spline applied first, then the affine): fixed -> moving points.
    """
    import SimpleITK as sitk

    s = settings or ClassicalSettings()
    pre = pre if pre is not None else affine(fixed, moving, s)
    extent = np.asarray(fixed.GetSize()) * np.asarray(fixed.GetSpacing())
    mesh = [max(1, int(round(e / s.bspline_grid_mm))) for e in extent]
    spline = sitk.BSplineTransformInitializer(fixed, mesh, order=3)
    reg = sitk.ImageRegistrationMethod()
    reg.SetNumberOfThreads(s.threads)
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=s.bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(s.sampling, s.seed + 1)  # ITK: seed 0 means the wall clock
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsLBFGSB(
        gradientConvergenceTolerance=1e-5,
        numberOfIterations=s.bspline_iterations,
        maximumNumberOfCorrections=5,
        maximumNumberOfFunctionEvaluations=4 * s.bspline_iterations,
    )
    shrink, smooth = _shrink(fixed, s)
    reg.SetShrinkFactorsPerLevel(shrink[-2:])
    reg.SetSmoothingSigmasPerLevel(smooth[-2:])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetMovingInitialTransform(pre)
    reg.SetInitialTransform(spline, inPlace=True)
    reg.Execute(fixed, moving)
    return sitk.CompositeTransform([pre, spline])


@_pinned_threads
def demons(fixed: Any, moving: Any, settings: ClassicalSettings | None = None, pre: Any = None) -> Any:
    """The affine step, then diffeomorphic Demons (ITK's, coarse to fine) on the affinely resampled,
    histogram-matched moving image (same modality).

    Returns:
        A composite transform (the Demons field applied first, then the affine): fixed -> moving points.
    """
    import SimpleITK as sitk

    s = settings or ClassicalSettings()
    pre = pre if pre is not None else affine(fixed, moving, s)
    resampled = sitk.Resample(moving, fixed, pre, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    matched = sitk.HistogramMatching(resampled, fixed, 256, 7, True)
    field = None
    shrink, _ = _shrink(fixed, s)
    levels = list(zip(s.shrink, s.demons_iterations, strict=True))
    for factor, iterations in levels:
        if factor not in shrink:
            continue
        f_l, m_l = _level(fixed, factor), _level(matched, factor)
        if field is None:
            field = sitk.Image(f_l.GetSize(), sitk.sitkVectorFloat64, fixed.GetDimension())
            field.CopyInformation(f_l)
        else:
            field = sitk.Resample(field, f_l, sitk.Transform(), sitk.sitkLinear, 0.0)
        demon = sitk.DiffeomorphicDemonsRegistrationFilter()
        demon.SetNumberOfThreads(s.threads)
        demon.SetNumberOfIterations(iterations)
        demon.SetSmoothDisplacementField(True)
        demon.SetStandardDeviations(s.demons_sigma)
        field = demon.Execute(f_l, m_l, field)
    if field.GetSize() != fixed.GetSize():
        field = sitk.Resample(field, fixed, sitk.Transform(), sitk.sitkLinear, 0.0)
    return sitk.CompositeTransform([pre, sitk.DisplacementFieldTransform(field)])


def _level(img: Any, factor: int) -> Any:
    import SimpleITK as sitk

    if factor == 1:
        return img
    sigma = [0.5 * factor * sp for sp in img.GetSpacing()]
    return sitk.Shrink(sitk.SmoothingRecursiveGaussian(img, sigma), [factor] * img.GetDimension())


def classical(method: str, fixed: Any, moving: Any, settings: ClassicalSettings | None = None) -> Any:
    """The transform of ``method`` (``affine``, ``bspline`` or ``demons``; ``identity``: none)."""
    import SimpleITK as sitk

    if method == "identity":  # no registration: the floor of an evaluation
        return sitk.AffineTransform(fixed.GetDimension())
    functions = {"affine": affine, "bspline": bspline, "demons": demons}
    if method not in functions:
        raise ConfigError(f"--method: expected one of {', '.join(CLASSICAL)} or learned, got {method!r}")
    return functions[method](fixed, moving, settings)


def affine_part(transform: Any) -> Any:
    """The affine (or identity) stage of a method's transform, for ``affine.tfm``."""
    import SimpleITK as sitk

    if transform.GetName() == "AffineTransform":
        return sitk.AffineTransform(transform)
    if transform.GetName() == "CompositeTransform":
        comp = sitk.CompositeTransform(transform)
        for i in range(comp.GetNumberOfTransforms()):
            t = comp.GetNthTransform(i)
            if t.GetName() == "AffineTransform":
                return sitk.AffineTransform(t)
    return sitk.AffineTransform(transform.GetDimension())
