"""The checkerboard PNG of a registered pair: fixed | moving before | warped | fixed/warped checkerboard,
the middle slice of the last axis for volumes, every panel on the fixed image's intensity window."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

SQUARES = 8  # checkerboard squares along each side


def _slice(img: Any) -> np.ndarray:
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(img).astype(np.float32)  # (z, y, x) or (y, x)
    return arr[arr.shape[0] // 2] if arr.ndim == 3 else arr


def checkerboard_png(fixed: Any, moving: Any, field_img: Any) -> bytes:
    """PNG bytes of the four panels (SimpleITK images: fixed, moving, the field on the fixed grid)."""
    import SimpleITK as sitk
    from PIL import Image as PILImage

    before = sitk.Resample(moving, fixed, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    dft = sitk.DisplacementFieldTransform(sitk.Image(field_img))
    after = sitk.Resample(moving, fixed, dft, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    f, b, a = _slice(fixed), _slice(before), _slice(after)
    panels = [_window(x, f) for x in (f, _matched(b, f), _matched(a, f))]
    yy, xx = np.indices(f.shape)
    step = [max(1, n // SQUARES) for n in f.shape]
    board = ((yy // step[0]) + (xx // step[1])) % 2 == 0
    panels.append(np.where(board, panels[0], panels[2]))
    gap = np.full((f.shape[0], 4), 255, np.uint8)
    row = np.concatenate([p for x in panels for p in (x, gap)][:-1], axis=1)
    buf = io.BytesIO()
    PILImage.fromarray(row[::-1]).save(buf, format="PNG")  # rows flipped: superior / anterior up
    return buf.getvalue()


def _matched(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``x`` linearly rescaled to ``ref``'s 1-99th percentile range (another modality stays visible)."""
    lo, hi = np.percentile(x, [1, 99])
    rlo, rhi = np.percentile(ref, [1, 99])
    return (x - lo) / max(hi - lo, 1e-6) * (rhi - rlo) + rlo


def _window(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(ref, [0.5, 99.5])
    return (np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
