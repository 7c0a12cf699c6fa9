"""Segmentation metrics per case and per class: overlap, surface distances, volumes, pixel scores.

All functions take plain numpy arrays (2D or 3D) and return plain floats. Distances are in mm:
``spacing`` gives the size of a pixel/voxel along each array axis (index order, as in
:class:`medsight.io.Image`); ``None`` means 1 mm.

Surface definitions follow MONAI (``monai.metrics``), whose edge extraction and KD-tree distances
are used here: the surface of a mask is its foreground voxels with a face-neighbour outside the mask
(or on the image border); distances are between surface voxel centres.

* ``hd95``: the larger of the two directed 95th percentiles (``compute_hausdorff_distance`` with
  ``percentile=95``).
* ``asd``: average symmetric surface distance, the mean over both directed distance sets pooled
  (``compute_average_surface_distance(symmetric=True)``).
* ``nsd``: normalised surface Dice, the fraction of surface voxels of both masks lying within
  ``tolerance_mm`` of the other surface (``compute_surface_dice`` without sub-voxels).

:func:`dice_coefficient` is the one Dice of medsight: checkpoint selection, ``medsight robustness`` and
these metrics all call it, so they agree on every case, empty masks included.

Empty masks (after restricting to ``roi``), the BraTS convention:

* both empty: perfect agreement, ``dice = iou = nsd = 1``, ``hd95 = asd = 0``, volume differences 0;
* exactly one empty: ``dice = iou = nsd = 0`` and ``hd95 = asd =`` the image diagonal in mm (the
  largest distance possible, so a missed or hallucinated structure is penalised in the mean instead
  of silently dropped as NaN or breaking it as inf);
* ratios whose denominator is zero are NaN: ``sensitivity`` when the reference is empty,
  ``precision`` when the prediction is empty, ``specificity`` when there are no negatives,
  ``volume_diff`` (relative) when only the reference is empty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from medsight.errors import ConfigError, DataError

SpacingLike = float | Sequence[float] | np.ndarray | None


def segmentation_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    *,
    spacing: SpacingLike = None,
    tolerance_mm: float = 1.0,
    roi: np.ndarray | None = None,
) -> dict[str, float]:
    """Overlap, surface and volume metrics of one binary class.

    Args:
        pred: predicted mask (bool or 0/1), 2D or 3D.
        ref: reference mask of the same shape.
        spacing: pixel/voxel size in mm per axis (a number for isotropic); None means 1 mm.
        tolerance_mm: tolerance of the normalised surface Dice.
        roi: optional mask; only voxels inside it are evaluated (e.g. a field of view).

    Returns:
        ``dice, iou, hd95, asd, nsd, volume_diff`` (relative, signed: (|P|-|R|)/|R|),
        ``abs_volume_diff`` (mm^3 in 3D, mm^2 in 2D), ``sensitivity, precision, specificity``.

    Example:
        >>> m = segmentation_metrics(np.eye(4, dtype=bool), np.eye(4, dtype=bool))
        >>> m["dice"], m["hd95"]
        (1.0, 0.0)
    """
    p = _binary(pred, "pred")
    r = _binary(ref, "ref")
    _same_shape(p, r, "pred", "ref")
    sp = _spacing(spacing, p.ndim)
    if not (math.isfinite(tolerance_mm) and tolerance_mm >= 0):
        raise ConfigError(f"tolerance_mm: expected a finite number >= 0, got {tolerance_mm!r}")
    n_total = p.size
    if roi is not None:
        m = _binary(roi, "roi")
        _same_shape(m, r, "roi", "ref")
        n_total = int(np.count_nonzero(m))
        if n_total == 0:
            raise DataError("roi: expected at least one voxel inside the region of interest, got none")
        p, r = p & m, r & m
    counts = _confusion(p, r, n_total)
    out = _overlap(*counts)
    out.update(_volumes(counts[0] + counts[1], counts[0] + counts[2], float(np.prod(sp))))
    out.update(_surface(p, r, sp, tolerance_mm))
    return out


def dice_coefficient(pred: ArrayLike, ref: ArrayLike) -> float:
    """The Dice coefficient 2|P & R| / (|P| + |R|) of two masks: the one Dice of medsight.

    Checkpoint selection (the segment task's validation), ``medsight robustness`` and the reported
    metrics all score overlap with this function, so they agree, empty masks included.

    Args:
        pred: predicted mask of any shape (bool, or numbers where non-zero is foreground); a numpy array
            or anything ``np.asarray`` reads, such as a CPU torch tensor.
        ref: reference mask of the same shape.

    Returns:
        The Dice in [0, 1]; 1.0 when both masks are empty, 0.0 when exactly one is.

    Example:
        >>> dice_coefficient(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
        0.6666666666666666
    """
    p, r = np.asarray(pred) != 0, np.asarray(ref) != 0
    _same_shape(p, r, "pred", "ref")
    tp, fp, fn, _ = _confusion(p, r, p.size)
    return _dice(tp, fp, fn)


def case_metrics(
    pred_labels: np.ndarray,
    ref_labels: np.ndarray,
    classes: Mapping[str, int | Sequence[int]],
    spacing: SpacingLike = None,
    roi: np.ndarray | None = None,
    tolerance_mm: float = 1.0,
) -> list[dict[str, float | str]]:
    """:func:`segmentation_metrics` for each class of one case's label maps.

    Args:
        pred_labels: predicted integer label map, 2D or 3D.
        ref_labels: reference integer label map of the same shape.
        classes: class name -> label value, or a list of values for a region (evaluated as their union,
            e.g. BraTS ``{"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}``).
        spacing: pixel/voxel size in mm per axis.
        roi: optional mask restricting the evaluation.
        tolerance_mm: tolerance of the normalised surface Dice.

    Returns:
        One row per class: ``{"class": name, "dice": ..., ...}``.
    """
    pred_labels, ref_labels = np.asarray(pred_labels), np.asarray(ref_labels)
    _same_shape(pred_labels, ref_labels, "pred_labels", "ref_labels")
    if not classes:
        raise ConfigError("classes: expected at least one class name -> label value(s), got none")
    rows: list[dict[str, float | str]] = []
    for name, values in classes.items():
        vals = _label_values(name, values)
        p = np.isin(pred_labels, vals)
        r = np.isin(ref_labels, vals)
        rows.append(
            {
                "class": str(name),
                **segmentation_metrics(p, r, spacing=spacing, roi=roi, tolerance_mm=tolerance_mm),
            }
        )
    return rows


def pixel_metrics(
    prob: np.ndarray, ref: np.ndarray, roi: np.ndarray | None = None, threshold: float = 0.5
) -> dict[str, float]:
    """Pixel-wise scores inside a field of view (e.g. retinal vessels in DRIVE).

    Args:
        prob: foreground probabilities (or any score); a pixel is foreground when ``prob >= threshold``.
        ref: reference mask of the same shape.
        roi: optional field-of-view mask; pixels outside it are ignored.
        threshold: binarisation threshold of ``prob``.

    Returns:
        ``auc`` (ROC AUC over the pixels, sklearn; NaN when the reference has one class only),
        ``accuracy, sensitivity, specificity, precision, f1`` (f1 is the Dice of the thresholded map).
    """
    from sklearn.metrics import roc_auc_score

    score = np.asarray(prob)
    if not np.issubdtype(score.dtype, np.number) or score.dtype == bool:
        raise DataError(f"prob: expected a numeric probability map, got dtype {score.dtype}")
    r = _binary(ref, "ref")
    _same_shape(score, r, "prob", "ref")
    if roi is not None:
        m = _binary(roi, "roi")
        _same_shape(m, r, "roi", "ref")
        score, r = score[m], r[m]
        if r.size == 0:
            raise DataError("roi: expected at least one pixel inside the field of view, got an empty mask")
    score, r = score.ravel().astype(np.float64), r.ravel()
    if not np.isfinite(score).all():
        raise DataError(f"prob: expected finite values, found {int((~np.isfinite(score)).sum())} NaN/inf")
    tp, fp, fn, tn = _confusion(score >= threshold, r, r.size)
    auc = float(roc_auc_score(r, score)) if 0 < tp + fn < r.size else math.nan
    return {
        "auc": auc,
        "accuracy": (tp + tn) / r.size,
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
        "f1": _dice(tp, fp, fn),
    }


def thresholded_jaccard(iou_values: Sequence[float] | np.ndarray, threshold: float = 0.65) -> float:
    """ISIC 2018 Task 1 score: per-image Jaccard, set to 0 below ``threshold``, then averaged.

    Non-finite values are ignored; returns NaN when no finite value is left.
    """
    v = np.asarray(iou_values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan
    return float(np.where(v >= threshold, v, 0.0).mean())


# --------------------------------------------------------------------------------------------- helpers


def _binary(a: np.ndarray, name: str) -> np.ndarray:
    """A boolean 2D/3D mask from bool input or numbers with one foreground value (0/1, 0/255).

    Several distinct non-zero values mean a label map was passed where one class was expected.
    """
    arr = np.asarray(a)
    if arr.ndim not in (2, 3):
        raise DataError(f"{name}: expected a 2D or 3D mask, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{name}: expected a boolean or 0/1 mask, got dtype {arr.dtype}")
    mask = arr != 0
    foreground = arr[mask]
    if foreground.size and not np.all(foreground == foreground[0]):
        values = np.unique(foreground)
        raise DataError(
            f"{name}: expected a binary mask (0 and one foreground value), found {values.size} non-zero "
            f"values {values[:5].tolist()}"
        )
    return mask


def _same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise DataError(f"{name_a}: shape {a.shape} does not match {name_b} {b.shape}")


def _spacing(spacing: SpacingLike, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    sp = np.atleast_1d(np.asarray(spacing, dtype=np.float64))
    if sp.size == 1:
        sp = np.repeat(sp, ndim)
    if sp.size != ndim or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        got = np.asarray(spacing).tolist()
        raise DataError(f"spacing: expected {ndim} positive numbers (mm per axis), got {got}")
    return tuple(float(s) for s in sp)


def _label_values(name: str, values: int | Sequence[int]) -> list[int]:
    vals = [values] if np.isscalar(values) else list(values)  # type: ignore[arg-type]
    if not vals or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals):
        raise ConfigError(f"classes[{name!r}]: expected an int label or a list of them, got {values!r}")
    return [int(v) for v in vals]


def _confusion(p: np.ndarray, r: np.ndarray, n_total: int) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) of boolean masks; ``n_total`` is the number of voxels evaluated."""
    tp = int(np.count_nonzero(p & r))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(r)) - tp
    return tp, fp, fn, n_total - tp - fp - fn


def _ratio(num: float, den: float, empty: float = math.nan) -> float:
    return float(num / den) if den else empty


def _dice(tp: int, fp: int, fn: int) -> float:
    """Dice from counts: both masks empty is perfect agreement (1.0), exactly one empty 0.0."""
    return _ratio(2 * tp, 2 * tp + fp + fn, empty=1.0)


def _overlap(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    return {
        "dice": _dice(tp, fp, fn),
        "iou": _ratio(tp, tp + fp + fn, empty=1.0),
        "sensitivity": _ratio(tp, tp + fn),
        "precision": _ratio(tp, tp + fp),
        "specificity": _ratio(tn, tn + fp),
    }


def _volumes(n_pred: int, n_ref: int, voxel_volume: float) -> dict[str, float]:
    if n_ref:
        rel = (n_pred - n_ref) / n_ref
    else:
        rel = 0.0 if n_pred == 0 else math.nan
    return {"volume_diff": float(rel), "abs_volume_diff": abs(n_pred - n_ref) * voxel_volume}


def _surface(p: np.ndarray, r: np.ndarray, spacing: tuple[float, ...], tol: float) -> dict[str, float]:
    """hd95, asd and nsd from MONAI's surface distances (one edge extraction for all three)."""
    has_p, has_r = bool(p.any()), bool(r.any())
    if not has_p and not has_r:
        return {"hd95": 0.0, "asd": 0.0, "nsd": 1.0}
    if not (has_p and has_r):
        diagonal = float(np.sqrt(sum((n * s) ** 2 for n, s in zip(p.shape, spacing, strict=True))))
        return {"hd95": diagonal, "asd": diagonal, "nsd": 0.0}
    d_pr, d_rp = _surface_distances(p, r, spacing)
    both = np.concatenate([d_pr, d_rp])
    return {
        "hd95": float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95))),
        "asd": float(both.mean()),
        "nsd": float(np.count_nonzero(both <= tol) / both.size),
    }


def _surface_distances(
    p: np.ndarray, r: np.ndarray, spacing: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Directed distances (mm) from each surface voxel of ``p`` to the surface of ``r``, and back."""
    import warnings

    import torch
    from monai.metrics.utils import get_edge_surface_distance

    with warnings.catch_warnings():  # MONAI passes its own deprecated argument internally
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
        _, (d_pr, d_rp), _ = get_edge_surface_distance(
            torch.from_numpy(np.ascontiguousarray(p)),
            torch.from_numpy(np.ascontiguousarray(r)),
            distance_metric="euclidean",
            spacing=list(spacing),
            symmetric=True,
            warn_empty=False,
        )
    return d_pr.numpy().astype(np.float64), d_rp.numpy().astype(np.float64)
