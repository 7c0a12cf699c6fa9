"""Registration metrics: the Jacobian determinant of a displacement field (2D / 3D, physical spacing),
folding (% of voxels with a non-positive determinant), SDlogJ, target registration error and the overlap
(Dice, HD95 per label, MONAI's surface distances) of warped label maps.

Convention: a displacement field ``u`` has shape ``(dim, *spatial)``; ``u[a]`` is the displacement in mm
along array axis ``a``, and the map is ``x -> x + u(x)`` (ITK's: a fixed point to its moving point).
``spacing`` is the voxel size in mm per array axis. For an ITK displacement-field image (components in
world x, y, z) use :func:`field_from_itk`, which rotates them into the image's array axes.

Example:
    >>> u = np.zeros((2, 8, 8))
    >>> float(jacobian_determinant(u).mean())
    1.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medsight.errors import DataError

LOG_CLIP = 1e-9  # determinants below this are clipped before the log (folded voxels)


def _check_field(u: np.ndarray, spacing: Sequence[float] | None) -> tuple[np.ndarray, tuple[float, ...]]:
    u = np.asarray(u, dtype=np.float64)
    if u.ndim not in (3, 4) or u.shape[0] != u.ndim - 1:
        raise DataError(f"field: expected shape (dim, *spatial) with dim 2 or 3, got {u.shape}")
    if any(n < 2 for n in u.shape[1:]):
        raise DataError(f"field: every spatial side needs at least 2 voxels, got {u.shape[1:]}")
    sp = tuple(float(s) for s in (spacing if spacing is not None else [1.0] * (u.ndim - 1)))
    if len(sp) != u.ndim - 1 or min(sp) <= 0:
        raise DataError(f"spacing: expected {u.ndim - 1} positive values, got {spacing}")
    return u, sp


def jacobian_determinant(u: np.ndarray, spacing: Sequence[float] | None = None) -> np.ndarray:
    """det(I + grad u) at every voxel (central differences inside, one-sided at the border).

    Args:
        u: displacement field ``(dim, *spatial)`` in mm along the array axes (see the module docstring).
        spacing: voxel size in mm per array axis (default 1).

    Returns:
        The determinant map, shape ``spatial``: 1 where the map preserves volume, <= 0 where it folds.
    """
    u, sp = _check_field(u, spacing)
    dim = u.shape[0]
    grad = np.empty((dim, dim, *u.shape[1:]))
    for i in range(dim):
        for j in range(dim):
            grad[i, j] = np.gradient(u[i], sp[j], axis=j)
    jac = grad + np.eye(dim).reshape(dim, dim, *([1] * dim))
    moved = np.moveaxis(jac, (0, 1), (-2, -1))
    return np.linalg.det(moved)


def folding_percent(jac: np.ndarray, mask: np.ndarray | None = None) -> float:
    """The percentage of voxels (inside ``mask``) with a non-positive Jacobian determinant."""
    values = _masked(jac, mask)
    return float(100.0 * np.count_nonzero(values <= 0) / max(values.size, 1))


def sdlogj(jac: np.ndarray, mask: np.ndarray | None = None) -> float:
    """The standard deviation of log(det J) (inside ``mask``), determinants clipped at ``LOG_CLIP``."""
    values = _masked(jac, mask)
    return float(np.std(np.log(np.clip(values, LOG_CLIP, None))))


def _masked(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if mask is None:
        return values.ravel()
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != values.shape:
        raise DataError(f"mask: shape {mask.shape} does not match the Jacobian map {values.shape}")
    return values[mask]


def tre(points: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Target registration error of mapped points against their true positions (both ``(N, dim)`` mm).

    Returns:
        ``tre_mean``, ``tre_median``, ``tre_p95`` and ``tre_max`` of the Euclidean distances (mm).
    """
    p, r = np.asarray(points, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if p.shape != r.shape or p.ndim != 2 or p.shape[0] == 0:
        raise DataError(
            f"points: expected two equal (N, dim) arrays with N >= 1, got {p.shape} and {r.shape}"
        )
    d = np.linalg.norm(p - r, axis=1)
    return {
        "tre_mean": float(d.mean()),
        "tre_median": float(np.median(d)),
        "tre_p95": float(np.percentile(d, 95)),
        "tre_max": float(d.max()),
    }


def field_tre(u: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """TRE where the true field is known: the error |u(x) - truth(x)| (mm) at every voxel of ``mask``."""
    u, truth = np.asarray(u, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if u.shape != truth.shape:
        raise DataError(f"field: shape {u.shape} does not match the true field {truth.shape}")
    sel = np.ones(u.shape[1:], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    pts = np.stack([c[sel] for c in u], axis=1)
    ref = np.stack([c[sel] for c in truth], axis=1)
    return tre(pts, ref)


def label_overlap(
    warped: np.ndarray,
    fixed: np.ndarray,
    labels: Sequence[int] | Mapping[str, int] | None = None,
    spacing: Sequence[float] | None = None,
    hd95: bool = True,
) -> list[dict[str, Any]]:
    """Dice and HD95 (mm; MONAI's surface distances) of each label of warped vs fixed label maps.

    Args:
        warped: the moving labels warped onto the fixed grid.
        fixed: the fixed labels, same shape.
        labels: the label values (or name -> value) to score; default every non-zero value in ``fixed``.
        spacing: voxel size in mm per array axis.
        hd95: also compute HD95 (slower in 3D).

    Returns:
        One row per label: ``{"label": name, "dice": ..., "hd95": ...}``.
    """
    from medsight.metrics.segmentation import dice_coefficient, segmentation_metrics

    warped, fixed = np.asarray(warped), np.asarray(fixed)
    if warped.shape != fixed.shape:
        raise DataError(f"labels: warped shape {warped.shape} does not match the fixed labels {fixed.shape}")
    if labels is None:
        labels = [int(v) for v in np.unique(fixed) if v != 0]
    named = dict(labels) if isinstance(labels, Mapping) else {str(v): int(v) for v in labels}
    rows: list[dict[str, Any]] = []
    for name, value in named.items():
        p, r = warped == value, fixed == value
        if hd95:
            m = segmentation_metrics(p, r, spacing=spacing)
            rows.append({"label": name, "dice": m["dice"], "hd95": m["hd95"]})
        else:
            rows.append({"label": name, "dice": dice_coefficient(p, r)})
    return rows


def field_from_itk(image: Any) -> tuple[np.ndarray, tuple[float, ...]]:
    """(field in this module's convention, spacing per array axis) of a SimpleITK displacement-field image.

    The ITK components (world x, y, z, mm) are rotated into the image's index axes and reordered to the
    array's axis order (z, y, x), so :func:`jacobian_determinant` gives ITK's own determinant.
    """
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(image).astype(np.float64)  # (*spatial reversed, dim)
    dim = image.GetDimension()
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)
    local = arr @ direction  # D^T u for every voxel: components along the index axes x, y, z
    u = np.moveaxis(local[..., ::-1], -1, 0)  # components in array order (z, y, x)
    return u, tuple(float(s) for s in image.GetSpacing()[::-1])


def field_metrics(
    u: np.ndarray, spacing: Sequence[float] | None = None, mask: np.ndarray | None = None
) -> dict[str, float]:
    """``folding_pct`` and ``sdlogj`` (and the Jacobian's ``jac_min`` / ``jac_max``) of a field."""
    jac = jacobian_determinant(u, spacing)
    values = _masked(jac, mask)
    return {
        "folding_pct": folding_percent(jac, mask),
        "sdlogj": sdlogj(jac, mask),
        "jac_min": float(values.min()),
        "jac_max": float(values.max()),
    }


__all__ = [
    "field_from_itk",
    "field_metrics",
    "field_tre",
    "folding_percent",
    "jacobian_determinant",
    "label_overlap",
    "sdlogj",
    "tre",
]
