"""2D pictures: PNG, JPEG, TIFF, GIF, BMP with Pillow (tifffile as the TIFF fallback).

Read: grey -> ``(1, H, W)``, colour -> ``(3, H, W)`` (alpha dropped, palettes converted, GIF/TIFF first
frame), 16-bit and float pictures keep their values. Spacing is (1, 1), origin (0, 0).

Write: uint8 (and bool, and integer maps that fit 0..255) exactly; 16-bit grey PNG/TIFF exactly;
float arrays are scaled min..max to 0..255, and the range is kept in the PNG text chunks
``medsight_min``/``medsight_max`` (read back into ``meta['intensity_range']``). TIFF keeps any dtype.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import DataError
from medsight.io.image import Image
from medsight.utils import atomic_write

_GREY_MODES = {"L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _pil_array(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    from PIL import Image as PILImage

    with PILImage.open(path) as pic:
        pic.seek(0)
        info = {k: v for k, v in pic.info.items() if isinstance(v, str | int | float)}
        mode = pic.mode
        frames = int(getattr(pic, "n_frames", 1))
        pic.load()
        if mode == "P" or mode == "PA":
            pic = pic.convert("RGB")
        elif mode in ("1", "LA"):
            pic = pic.convert("L")
        elif mode not in _GREY_MODES and mode != "RGB":
            pic = pic.convert("RGB")
        arr = np.asarray(pic)
    if arr.ndim == 3 and arr.shape[2] == 3 and mode in ("P", "PA"):
        if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
            arr = arr[..., 0]  # a grey palette: one channel
    info.update(mode=mode, frames=frames)
    return arr, info


def _tifffile_array(path: Path) -> np.ndarray:
    import tifffile

    arr = np.asarray(tifffile.imread(str(path), key=0))
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar (C, H, W) storage
    return arr


def _channels_first(path: Path, arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        return np.moveaxis(arr[..., :3] if arr.shape[2] == 4 else arr, 2, 0)
    if arr.ndim == 3 and arr.shape[2] == 2:  # grey + alpha
        return arr[None, ..., 0]
    raise DataError(f"{path}: expected a 2D grey or colour picture, found array shape {arr.shape}")


def read_picture(path: str | Path) -> Image:
    """Read a 2D picture into a ``(C, H, W)`` :class:`Image`.

    Raises:
        DataError: the file is not a readable picture (corrupt, truncated, empty).
    """
    path = Path(path)
    info: dict[str, Any] = {}
    try:
        arr, info = _pil_array(path)
    except Exception as exc:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError, ValueError ...
        if path.suffix.lower() not in (".tif", ".tiff"):
            raise DataError(f"{path}: cannot read picture ({type(exc).__name__}: {exc})") from exc
        try:
            arr = _tifffile_array(path)
        except Exception as exc2:
            raise DataError(f"{path}: cannot read TIFF ({type(exc2).__name__}: {exc2})") from exc2
        info = {"mode": "tifffile"}
    if arr.size == 0:
        raise DataError(f"{path}: picture has no pixels, shape {arr.shape}")
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    array = np.ascontiguousarray(_channels_first(path, arr))
    meta: dict[str, Any] = {"source": str(path), "format": "picture", "dtype": array.dtype.name}
    meta["mode"] = info.get("mode")
    if "medsight_min" in info and "medsight_max" in info:
        meta["intensity_range"] = (float(info["medsight_min"]), float(info["medsight_max"]))
    return Image.from_array(array, **meta)


def _fits(arr: np.ndarray, dtype: type) -> bool:
    info = np.iinfo(dtype)
    return bool(arr.size == 0 or (arr.min() >= info.min and arr.max() <= info.max))


def _is_integral(arr: np.ndarray) -> bool:
    return bool(np.isfinite(arr).all() and np.array_equal(arr, np.round(arr)))


def picture_array(image: Image, suffix: str) -> tuple[np.ndarray, dict[str, str]]:
    """The ``(H, W)`` or ``(H, W, C)`` array to store for ``suffix``, and PNG text chunks to add.

    Integer data that fits uint8 (or uint16 for grey PNG/TIFF) is stored exactly; float data is
    scaled to uint8 and the original range returned as text chunks.
    """
    if image.ndim != 2:
        raise DataError(f"picture writer ({suffix}): expected a 2D image, found spatial shape {image.shape}")
    if image.channels not in (1, 3, 4):
        raise DataError(f"picture writer ({suffix}): expected 1, 3 or 4 channels, found {image.channels}")
    arr = np.asarray(image.array)
    arr = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
    if suffix in (".tif", ".tiff") and arr.dtype != bool:
        return arr, {}
    text: dict[str, str] = {}
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating) and _is_integral(arr) and _fits(arr, np.uint8):
        arr = arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if _fits(arr, np.uint8):
            return arr.astype(np.uint8, copy=False), text
        if arr.ndim == 2 and suffix == ".png" and _fits(arr, np.uint16):
            return arr.astype(np.uint16, copy=False), text
    if not np.isfinite(arr).all():
        raise DataError(f"picture writer ({suffix}): array holds NaN or Inf values")
    lo, hi = float(arr.min()), float(arr.max())
    scaled = (arr.astype(np.float64) - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros(arr.shape)
    text = {"medsight_min": repr(lo), "medsight_max": repr(hi)}
    return np.round(scaled).astype(np.uint8), text


def write_picture(image: Image, path: str | Path, *, quality: int = 95) -> Path:
    """Write a 2D image as PNG/JPEG/TIFF/GIF/BMP atomically (see the module doc for dtypes)."""
    from PIL import Image as PILImage
    from PIL import PngImagePlugin

    path = Path(path)
    suffix = path.suffix.lower()
    arr, text = picture_array(image, suffix)

    def write(tmp: Path) -> None:
        if suffix in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(str(tmp), arr, photometric="rgb" if arr.ndim == 3 else "minisblack")
            return
        pic = PILImage.fromarray(arr)
        if suffix == ".png":
            chunks = PngImagePlugin.PngInfo()
            for key, value in text.items():
                chunks.add_text(key, value)
            pic.save(tmp, format="PNG", pnginfo=chunks)
        elif suffix in (".jpg", ".jpeg"):
            if arr.ndim == 3 and arr.shape[2] == 4:
                pic = pic.convert("RGB")
            pic.save(tmp, format="JPEG", quality=quality)
        else:
            pic.save(tmp, format={".gif": "GIF", ".bmp": "BMP"}[suffix])

    return atomic_write(path, write)
