"""One pair, any method: ``medsight register`` and :func:`medsight.register` (Python).

Every method gives one transform from fixed to moving physical points; from it, on the fixed image's
full-resolution grid, come the ITK displacement field, the warped image and labels (resampled through
that field, so SimpleITK's ``DisplacementFieldTransform`` applied to the written field gives the written
warped image), the Jacobian determinant map and the metrics. ``OUT/`` holds::

    warped<ext>          the moving image in the fixed image's geometry and format (linear)
    warped_labels<ext>   the moving labels, nearest neighbour (with --moving-labels)
    field.nii.gz         ITK displacement field (mm, LPS world axes, fixed point -> moving point)
    affine.tfm           the affine stage as an ITK transform (identity for a learned run without one)
    jacobian.nii.gz      det(I + grad u) of the field, physical spacing (<= 0: folding)
    checkerboard.png     fixed | moving before | warped | fixed/warped checkerboard (middle slice)
    metrics.json         method, seconds, folding %, SDlogJ, and Dice / HD95 per label with both labels
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import ConfigError
from medsight.io import Image
from medsight.tasks.register.classical import CLASSICAL, ClassicalSettings, affine_part, classical
from medsight.tasks.register.images import Side, check_pair, from_sitk, load_side, working_image

log = logging.getLogger(__name__)
METHODS = (*CLASSICAL, "learned")
AUTO_SPACING_3D = 2.0  # mm: the classical methods' working spacing for volumes (2D: native)


@dataclass
class PairResult:
    """A registered pair: the transform, the field on the fixed grid, the warped images and metrics."""

    method: str
    transform: Any  # SimpleITK transform, fixed -> moving physical points
    field: Any  # SimpleITK displacement-field image (VectorFloat64) on the fixed grid
    warped: Image
    warped_labels: Image | None
    jacobian: Image
    metrics: dict[str, Any]
    files: list[Path] = field(default_factory=list)


def resolve_spacing(spacing: float | str | None, dim: int) -> float | None:
    """The working spacing (mm) of the classical methods: ``auto`` is 2 mm for volumes, native in 2D."""
    if spacing == "auto":
        return AUTO_SPACING_3D if dim == 3 else None
    if spacing is None:
        return None
    value = float(spacing)
    if value <= 0:
        raise ConfigError(f"spacing: expected a positive number of mm, 'auto' or None, got {spacing!r}")
    return value


def pair_transform(
    method: str,
    fixed: Side,
    moving: Side,
    *,
    run: str | Path | None = None,
    spacing: float | str | None = "auto",
    settings: ClassicalSettings | None = None,
) -> Any:
    """The fixed -> moving transform of ``method`` for a checked pair."""
    if method == "learned":
        if run is None:
            raise ConfigError("--method learned: give --run, a run folder from `medsight train register`")
        from medsight.tasks.register.learned import LearnedRegistration

        return LearnedRegistration.from_run(run).transform(fixed, moving)
    if method not in CLASSICAL:
        raise ConfigError(f"--method: expected one of {', '.join(METHODS)}, got {method!r}")
    sp = resolve_spacing(spacing, fixed.dim)
    return classical(method, working_image(fixed.sitk, sp), working_image(moving.sitk, sp), settings)


def register(
    fixed: str | Path | Image,
    moving: str | Path | Image,
    method: str = "bspline",
    *,
    output: str | Path | None = None,
    moving_labels: str | Path | Image | None = None,
    fixed_labels: str | Path | Image | None = None,
    run: str | Path | None = None,
    spacing: float | str | None = "auto",
    labels: list[int] | None = None,
    overwrite: bool = False,
    settings: ClassicalSettings | None = None,
) -> PairResult:
    """Register ``moving`` to ``fixed`` in physical space and (with ``output``) write OUT/ (see the module).

    Args:
        fixed: the fixed image (a file medsight reads, or an :class:`~medsight.io.Image`).
        moving: the moving image.
        method: ``affine`` | ``bspline`` | ``demons`` (classical, SimpleITK) | ``learned`` (needs ``run``).
        output: a new (or empty) folder for the outputs; None writes nothing.
        moving_labels: the moving image's label map, warped by nearest neighbour.
        fixed_labels: the fixed image's label map: with both, Dice and HD95 per label are scored.
        run: a run folder of ``medsight train register`` (the learned method).
        spacing: the classical methods' working spacing in mm (``auto``: 2 mm for volumes, native 2D).
        labels: the label values to score (default: every label in ``fixed_labels``).
        overwrite: replace a non-empty ``output``.
        settings: the classical methods' iterations and scales.

    Returns:
        The :class:`PairResult`.

    Raises:
        DataError: bad input (see :mod:`medsight.tasks.register.images`).
        ConfigError: an unknown method, ``learned`` without a run, or a non-empty ``output``.

    Example:
        >>> result = register("fixed.nii.gz", "moving.nii.gz", "affine", output="out")  # doctest: +SKIP
    """
    if method not in METHODS:
        raise ConfigError(f"--method: expected one of {', '.join(METHODS)}, got {method!r}")
    out = Path(output) if output is not None else None
    if out is not None and out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"--output: {out} exists and is not empty; give a new folder or --overwrite")
    f_side = load_side(fixed, "fixed", fixed_labels)
    m_side = load_side(moving, "moving", moving_labels)
    overlap = check_pair(f_side, m_side)
    t0 = time.perf_counter()
    transform = pair_transform(method, f_side, m_side, run=run, spacing=spacing, settings=settings)
    seconds = time.perf_counter() - t0
    result = apply_transform(transform, f_side, m_side, method, labels=labels)
    result.metrics.update({"seconds": round(seconds, 3), **overlap})
    if out is not None:
        result.files = write_pair(result, f_side, m_side, out, overwrite=overwrite)
    return result


def apply_transform(
    transform: Any, fixed: Side, moving: Side, method: str, labels: list[int] | None = None
) -> PairResult:
    """The field on the fixed grid, the moving image and labels resampled through it, the metrics."""
    import SimpleITK as sitk

    from medsight.metrics.registration import field_from_itk, field_metrics, jacobian_determinant

    ref = fixed.sitk
    field_img = sitk.TransformToDisplacementField(
        transform,
        sitk.sitkVectorFloat64,
        ref.GetSize(),
        ref.GetOrigin(),
        ref.GetSpacing(),
        ref.GetDirection(),
    )
    warped = warp(moving.sitk, ref, field_img, sitk.sitkLinear)
    warped_img = _as_moving_dtype(from_sitk(warped, fixed.image), moving.image)
    warped_labels = None
    if moving.labels_sitk is not None:
        lab = warp(moving.labels_sitk, ref, field_img, sitk.sitkNearestNeighbor)
        warped_labels = from_sitk(lab, fixed.image)
    u, sp = field_from_itk(field_img)
    jac = jacobian_determinant(u, sp)
    mask = None
    if fixed.labels is not None:
        mask = np.transpose(fixed.labels.array[0]) > 0
    metrics: dict[str, Any] = {"method": method, **field_metrics(u, sp, mask)}
    metrics["jacobian_region"] = "fixed labels > 0" if mask is not None else "whole fixed grid"
    if warped_labels is not None and fixed.labels is not None:
        metrics.update(overlap_metrics(warped_labels, fixed.labels, labels))
    jac_img = fixed.image.with_array(np.transpose(jac)[None].astype(np.float32))
    return PairResult(method, transform, field_img, warped_img, warped_labels, jac_img, metrics)


def warp(image: Any, reference: Any, field_img: Any, interpolator: int) -> Any:
    """``image`` resampled onto ``reference`` through an ITK displacement field (SimpleITK's own)."""
    import SimpleITK as sitk

    dft = sitk.DisplacementFieldTransform(sitk.Image(field_img))  # the transform takes over its copy
    return sitk.Resample(image, reference, dft, interpolator, 0.0, image.GetPixelID())


def overlap_metrics(warped: Image, fixed: Image, labels: list[int] | None = None) -> dict[str, Any]:
    """Mean Dice / HD95 over labels and the per-label rows, for metrics.json."""
    from medsight.metrics.registration import label_overlap

    rows = label_overlap(warped.array[0], fixed.array[0], labels, spacing=fixed.spacing)
    dice = [r["dice"] for r in rows]
    hd = [r["hd95"] for r in rows]
    return {
        "dice_mean": float(np.nanmean(dice)) if dice else float("nan"),
        "hd95_mean": float(np.nanmean(hd)) if hd else float("nan"),
        "per_label": rows,
    }


def _as_moving_dtype(warped: Image, moving: Image) -> Image:
    dtype = moving.array.dtype
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        arr = np.clip(np.round(warped.array), info.min, info.max).astype(dtype)
        return warped.with_array(arr)
    return warped


def output_suffix(side: Side) -> str:
    """The fixed image's file suffix (``.nii.gz`` for DICOM series and in-memory images)."""
    from medsight.io.readers import split_suffix

    path = Path(side.source)
    if not path.is_file():
        return ".nii.gz"
    suffix = split_suffix(path)[1]
    return suffix if suffix and suffix not in (".dcm", ".npz", ".npy") else ".nii.gz"


def write_pair(
    result: PairResult, fixed: Side, moving: Side, output: Path, *, overwrite: bool = False
) -> list[Path]:
    """Write OUT/ (see the module docstring) atomically: a complete folder or none."""
    import SimpleITK as sitk

    from medsight.io import write_image
    from medsight.tasks.register.figures import checkerboard_png
    from medsight.utils import atomic_folder

    ext = output_suffix(fixed)
    names = [
        f"warped{ext}",
        "field.nii.gz",
        "affine.tfm",
        "jacobian.nii.gz",
        "checkerboard.png",
        "metrics.json",
    ]
    if result.warped_labels is not None:
        names.insert(1, f"warped_labels{ext}")
    with atomic_folder(output, replace=overwrite) as tmp:
        write_image(result.warped, tmp / f"warped{ext}", like=fixed.image)
        if result.warped_labels is not None:
            write_image(result.warped_labels, tmp / f"warped_labels{ext}", like=fixed.image)
        sitk.WriteImage(sitk.Cast(result.field, sitk.sitkVectorFloat32), str(tmp / "field.nii.gz"), True)
        sitk.WriteTransform(affine_part(result.transform), str(tmp / "affine.tfm"))
        write_image(result.jacobian, tmp / "jacobian.nii.gz", like=fixed.image)
        (tmp / "checkerboard.png").write_bytes(checkerboard_png(fixed.sitk, moving.sitk, result.field))
        info = {**result.metrics, "fixed": fixed.source, "moving": moving.source}
        (tmp / "metrics.json").write_text(metrics_json(info), encoding="utf-8")
    return [output / n for n in names]


def _significant(value: Any, digits: int = 8) -> Any:
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _significant(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_significant(v, digits) for v in value]
    return value


def metrics_json(info: dict[str, Any]) -> str:
    """metrics.json text: numbers to 8 significant digits (what a reader compares; the rest is noise)."""
    return json.dumps(_significant(info), indent=2, default=float)
