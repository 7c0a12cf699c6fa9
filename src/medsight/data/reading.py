"""Read one case of a :class:`DatasetSpec` into arrays: its channels stacked, its label mapped.

Everything downstream reads cases through these functions, so a layout's quirks (an RGB picture as
one file, channels as ``_0000``/``_0001`` files, label files storing 0/255) are handled once::

    image = read_case_image(case)           # Image (C, *spatial), channels of all files stacked
    label = read_label(spec, case)          # Image (1, *spatial), values of spec.labels
    roi = read_roi(case)                    # Image (1, *spatial) bool, or None
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medsight.data.spec import Case, DatasetSpec
from medsight.errors import DataError
from medsight.io import Image, read_image
from medsight.io.readers import smallest_int_dtype


@dataclass
class CaseData:
    """The arrays of one case: image (C, *spatial), label and roi (1, *spatial) or None."""

    case: Case
    image: Image
    label: Image | None = None
    roi: Image | None = None


def geometry_difference(a: Image, b: Image, what_a: str = "image", what_b: str = "image") -> str | None:
    """Describe how the geometry of ``b`` differs from ``a`` ("shape ... does not match ..."), or None."""
    if a.ndim != b.ndim:
        return f"{b.ndim}D does not match {what_a} ({a.ndim}D)"
    if a.shape != b.shape:
        return f"shape {b.shape} does not match {what_a} {a.shape}"
    if not np.allclose(a.spacing, b.spacing, rtol=1e-3, atol=1e-4):
        return f"spacing {_fmt(b.spacing)} does not match {what_a} {_fmt(a.spacing)}"
    if not np.allclose(a.origin, b.origin, atol=1e-2):
        return f"origin {_fmt(b.origin)} does not match {what_a} {_fmt(a.origin)}"
    if not np.allclose(a.direction, b.direction, atol=1e-3):
        return f"direction {_fmt(b.direction.ravel())} does not match {what_a} {_fmt(a.direction.ravel())}"
    return None


def _fmt(values: tuple[float, ...] | np.ndarray) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"


def channel_field(case: Case, index: int) -> str:
    """The field name used in messages for the ``index``-th image file of ``case``."""
    return "image" if len(case.images) == 1 else f"image_{index:04d}"


def read_case_image(case: Case) -> Image:
    """Read every image file of ``case`` and stack their channels into one :class:`Image`.

    Raises:
        DataError: a file is missing or unreadable, or the files differ in shape or geometry.
    """
    if not case.images:
        raise DataError(f"{case.case_id}: case has no image files")
    images = [read_image(p) for p in case.images]
    first = images[0]
    for i, other in enumerate(images[1:], start=1):
        diff = geometry_difference(first, other, what_a=channel_field(case, 0))
        if diff:
            raise DataError(f"{case.case_id} {channel_field(case, i)} ({case.images[i]}): {diff}")
    if len(images) == 1:
        return first
    arrays = [im.array for im in images]
    dtype = np.result_type(*arrays)
    stacked = np.concatenate([a.astype(dtype, copy=False) for a in arrays], axis=0)
    return Image(
        stacked,
        first.spacing,
        first.origin,
        first.direction.copy(),
        {**first.meta, "sources": [str(p) for p in case.images]},
    )


def _as_integers(raw: np.ndarray, where: str) -> np.ndarray:
    arr = np.asarray(raw)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        return arr
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{where}: label map has dtype {arr.dtype}, expected integers")
    if not np.isfinite(arr).all():
        raise DataError(f"{where}: label map holds NaN or Inf values")
    rounded = np.round(arr)
    if not np.array_equal(rounded, arr):
        raise DataError(f"{where}: label map holds non-integer values (e.g. {arr[rounded != arr].flat[0]!r})")
    return rounded.astype(np.int64)


def _small_non_negative(arr: np.ndarray) -> bool:
    return arr.size > 0 and int(arr.min()) >= 0 and int(arr.max()) < 1 << 16


def label_values(raw: np.ndarray) -> list[int]:
    """The sorted distinct values of an integer label array (bincount when they are small, else unique)."""
    arr = _as_integers(raw, "label")
    if _small_non_negative(arr):
        return [int(v) for v in np.flatnonzero(np.bincount(arr.ravel()))]
    return [int(v) for v in np.unique(arr)]


def label_array(raw: np.ndarray, where: str, label_map: dict[int, int] | None) -> np.ndarray:
    """Turn a stored label array into integer class values, applying ``label_map`` when given.

    Raises:
        DataError: values are not integers, or a value is missing from ``label_map``.
    """
    arr = _as_integers(raw, where)
    if label_map is None:
        return arr.astype(smallest_int_dtype(arr), copy=False)
    values = label_values(arr)
    unknown = [v for v in values if v not in label_map]
    if unknown:
        raise DataError(f"{where}: label values {unknown} are not in the label map {sorted(label_map)}")
    if _small_non_negative(arr):
        lut = np.zeros(values[-1] + 1, dtype=np.int64)
        lut[values] = [label_map[v] for v in values]
        mapped = lut[arr]
    else:
        uniq, inverse = np.unique(arr, return_inverse=True)
        mapped = np.array([label_map[int(v)] for v in uniq], dtype=np.int64)[inverse].reshape(arr.shape)
    return mapped.astype(smallest_int_dtype(mapped), copy=False)


def read_label(spec: DatasetSpec, case: Case) -> Image | None:
    """Read the label of ``case`` as a one-channel integer :class:`Image` in the values of ``spec.labels``.

    Returns None when the case has no label. Raises DataError for an unreadable or multi-channel file.
    """
    if case.label is None:
        return None
    img = read_image(case.label)
    where = f"{case.case_id} label ({case.label})"
    if img.channels != 1:
        raise DataError(f"{where}: expected a one-channel label map, found {img.channels} channels")
    return img.with_array(label_array(img.array, where, spec.label_map))


def read_roi(case: Case) -> Image | None:
    """Read the region-of-interest mask of ``case`` (non-zero = inside) as a bool Image, or None."""
    if case.roi is None:
        return None
    img = read_image(case.roi)
    return img.with_array(np.any(img.array != 0, axis=0, keepdims=True))


def read_case(spec: DatasetSpec, case: Case) -> CaseData:
    """Read image, label and roi of ``case``; label and roi must share the image's geometry."""
    image = read_case_image(case)
    data = CaseData(case=case, image=image, label=read_label(spec, case), roi=read_roi(case))
    for what, other, path in (("label", data.label, case.label), ("roi", data.roi, case.roi)):
        diff = other is not None and geometry_difference(image, other)
        if diff:
            raise DataError(f"{case.case_id} {what} ({Path(str(path)).name}): {diff}")
    return data
