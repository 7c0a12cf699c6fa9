"""Boxes drawn on images (numpy + PIL, torch-free): reference boxes green, predicted boxes red with
their scores. Used by predict's overlays, the evaluation's best / worst images and the service.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

GREEN, RED = (0, 200, 0), (230, 0, 0)
MIN_SIDE = 256  # smaller pictures (MedMNIST, 3D slices) are enlarged by a whole factor so labels stay legible


def display_image(image: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` (or ``(H, W)``) -> ``(H, W, 3)`` uint8, windowed to its 0.5-99.5 percentiles."""
    arr = np.asarray(image, dtype=np.float32)
    arr = arr[None] if arr.ndim == 2 else arr
    arr = arr[:3] if arr.shape[0] >= 3 else np.repeat(arr[:1], 3, axis=0)
    lo, hi = np.percentile(arr, [0.5, 99.5])
    scaled = np.clip((arr - lo) / max(float(hi - lo), 1e-6), 0, 1)
    return (np.moveaxis(scaled, 0, -1) * 255).astype(np.uint8)


def draw_boxes(
    rgb: np.ndarray,
    reference: np.ndarray | None = None,
    predicted: np.ndarray | None = None,
    scores: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """``rgb`` ``(H, W, 3)`` with 2D boxes (x0, y0, x1, y1; x = column) drawn: reference green,
    predicted red with ``"<name> <score>"`` labels; a picture under ``MIN_SIDE`` is first enlarged by the
    smallest whole factor that reaches it (nearest neighbour), its boxes with it."""
    from PIL import Image, ImageDraw

    scale = max(1, -(-MIN_SIDE // max(rgb.shape[:2])))
    rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    picture = Image.fromarray(np.ascontiguousarray(rgb))
    draw = ImageDraw.Draw(picture)
    width = max(1, round(max(rgb.shape[:2]) / 256))
    for box in np.asarray(reference if reference is not None else np.zeros((0, 4))).reshape(-1, 4) * scale:
        draw.rectangle([float(v) for v in box], outline=GREEN, width=width)
    boxes = np.asarray(predicted if predicted is not None else np.zeros((0, 4))).reshape(-1, 4) * scale
    for k, box in enumerate(boxes):
        draw.rectangle([float(v) for v in box], outline=RED, width=width)
        text = " ".join(
            t for t in ((names[k] if names else ""), (f"{scores[k]:.2f}" if scores is not None else "")) if t
        )
        if text:
            draw.text((float(box[0]) + 2, float(box[1]) + 1), text, fill=RED)
    return np.asarray(picture)


def png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return buf.getvalue()


def slice_view(image: np.ndarray, boxes: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray], int]:
    """A 3D ``(C, X, Y, Z)`` image as the axial slice through the first box's centre (the middle slice
    without boxes), and each box set cut to the 2D boxes crossing it (x = column: the Y axis)."""
    first = next((b for b in boxes if len(b)), None)
    z = int((first[0, 2] + first[0, 5]) / 2) if first is not None else image.shape[-1] // 2
    z = min(max(z, 0), image.shape[-1] - 1)
    cut = [b[(b[:, 2] <= z) & (b[:, 5] > z)][:, [1, 0, 4, 3]] if len(b) else np.zeros((0, 4)) for b in boxes]
    return image[..., z], cut, z


def overlay(
    image: np.ndarray,
    reference: np.ndarray | None,
    predicted: np.ndarray,
    scores: Sequence[float],
    names: Sequence[str],
) -> np.ndarray:
    """An RGB figure of a 2D or 3D image (a slice) with its reference and predicted boxes."""
    ref = np.zeros((0, 2 * (image.ndim - 1))) if reference is None else np.asarray(reference)
    pred = np.asarray(predicted).reshape(-1, 2 * (image.ndim - 1))
    scores = list(scores)
    if image.ndim == 4:
        keep = [(pred[:, 2] <= z) & (pred[:, 5] > z) for z in [slice_view(image, [ref, pred])[2]]][0]
        plane, (ref, pred), _ = slice_view(image, [ref, pred])
        scores, names = (
            [s for s, k in zip(scores, keep, strict=True) if k],
            [n for n, k in zip(names, keep, strict=True) if k],
        )
        image = plane
    return draw_boxes(display_image(image), ref, pred, scores, names)
