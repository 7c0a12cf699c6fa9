"""One entry point per direction: :func:`read_image` and :func:`write_image`, dispatching by format.

Formats and the module that owns each::

    nifti    .nii .nii.gz                           medsight.io.nifti    (nibabel)
    dicom    a folder, a list of files, .dcm, .zip  medsight.io.dicom    (pydicom)
    itk      .nrrd .nhdr .mha .mhd                  medsight.io.itk      (SimpleITK)
    picture  .png .jpg .jpeg .tif .tiff .gif .bmp   medsight.io.pictures (Pillow, tifffile)
    numpy    .npy .npz                              medsight.io.npz      (numpy)

Example::

    img = read_image("case_001.nii.gz")          # Image, array (C, i, j, k), LPS geometry
    write_image(img.with_array(mask), "seg.nii.gz")
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import DataError, did_you_mean
from medsight.io.image import Image

# format name -> (module, reader function, writer function or None)
_FORMATS: dict[str, tuple[str, str, str | None]] = {
    "nifti": ("medsight.io.nifti", "read_nifti", "write_nifti"),
    "dicom": ("medsight.io.dicom", "read_dicom", None),
    "itk": ("medsight.io.itk", "read_itk", "write_itk"),
    "picture": ("medsight.io.pictures", "read_picture", "write_picture"),
    "numpy": ("medsight.io.npz", "read_numpy", "write_numpy"),
}

_SUFFIXES: dict[str, str] = {
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".ima": "dicom",
    ".zip": "dicom",
    ".nrrd": "itk",
    ".nhdr": "itk",
    ".mha": "itk",
    ".mhd": "itk",
    ".png": "picture",
    ".jpg": "picture",
    ".jpeg": "picture",
    ".tif": "picture",
    ".tiff": "picture",
    ".gif": "picture",
    ".bmp": "picture",
    ".npy": "numpy",
    ".npz": "numpy",
}

PathLike = str | Path


def supported_formats() -> str:
    """A one-line description of the readable formats, used in error messages."""
    by_format: dict[str, list[str]] = {}
    for suffix, fmt in _SUFFIXES.items():
        by_format.setdefault(fmt, []).append(suffix)
    parts = [f"{fmt} ({' '.join(sfx)})" for fmt, sfx in by_format.items()]
    return "; ".join(parts) + "; a DICOM series folder"


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def split_suffix(path: PathLike) -> tuple[str, str]:
    """``"case_01.nii.gz"`` -> ``("case_01", ".nii.gz")``; unknown suffixes split like ``Path.suffix``."""
    p = Path(path)
    suffix = _suffix(p)
    name = p.name
    return (name[: -len(suffix)], suffix) if suffix and name.lower().endswith(suffix) else (name, "")


def _looks_like_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def detect_format(path: PathLike | Sequence[PathLike]) -> str:
    """The format name for ``path`` (a file, a DICOM folder or a list of DICOM files).

    Raises:
        DataError: the path does not exist or its suffix is not a supported format.
    """
    if not isinstance(path, str | Path):
        return "dicom"
    p = Path(path)
    if p.is_dir():
        return "dicom"
    suffix = _suffix(p)
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    if p.is_file() and _looks_like_dicom(p):
        return "dicom"
    raise DataError(
        f"{p}: unknown image format {suffix or '(no suffix)'!r}; supported: {supported_formats()}"
    )


def _function(fmt: str, which: int) -> Callable[..., Any]:
    if fmt not in _FORMATS:
        raise DataError(
            f"unknown reader {fmt!r}{did_you_mean(fmt, list(_FORMATS))}; known: {', '.join(_FORMATS)}"
        )
    module, *names = _FORMATS[fmt]
    name = names[which]
    if name is None:
        raise DataError(f"format {fmt!r} cannot be written; writable: {', '.join(writable_formats())}")
    return getattr(importlib.import_module(module), name)


def writable_formats() -> list[str]:
    """Names of the formats :func:`write_image` can write."""
    return [fmt for fmt, (_, _, writer) in _FORMATS.items() if writer is not None]


def read_image(path: PathLike | Sequence[PathLike], *, reader: str | None = None, **options: Any) -> Image:
    """Read an image file, a DICOM series folder or a list of DICOM files into an :class:`Image`.

    Args:
        path: the file, folder or list of DICOM files.
        reader: force a format ("nifti", "dicom", "itk", "picture", "numpy") instead of the suffix.
        **options: passed to the format's reader (e.g. ``series_uid=`` for DICOM, ``key=`` for npz).

    Raises:
        DataError: missing, unreadable, empty or unsupported input; the message names the file.
    """
    if isinstance(path, str | Path):
        p = Path(path)
        if not p.exists():
            raise DataError(f"{p}: file not found")
        if p.is_file() and p.stat().st_size == 0:
            raise DataError(f"{p}: file is empty (0 bytes)")
    fmt = reader.lower() if reader else detect_format(path)
    image = _function(fmt, 0)(path, **options)
    check_not_empty(image, str(path))
    return image


def write_image(image: Image, path: PathLike, *, like: Image | None = None, **options: Any) -> Path:
    """Write ``image`` atomically in the format given by the suffix of ``path``.

    Args:
        image: what to write.
        path: destination; the suffix picks the format (``.nii.gz``, ``.nrrd``, ``.mha``, ``.png``, ...).
        like: a reference image (e.g. the input a prediction was made for): its geometry and format
            details (NIfTI header codes, ...) are used, and its spatial shape must match.
        **options: passed to the format's writer.

    Returns:
        The path written.
    """
    p = Path(path)
    if like is not None:
        image = _like(image, like, p)
    check_not_empty(image, str(p))
    fmt = detect_format(p) if not p.is_dir() else "dicom"
    return _function(fmt, 1)(image, p, **options)


def _like(image: Image, like: Image, path: Path) -> Image:
    if image.shape != like.shape:
        raise DataError(
            f"{path}: spatial shape {image.shape} does not match the reference image {like.shape}"
        )
    meta = {**like.meta, **image.meta}
    return replace(
        image, spacing=like.spacing, origin=like.origin, direction=like.direction.copy(), meta=meta
    )


def check_not_empty(image: Image, name: str) -> None:
    """Raise DataError when ``image`` has no voxels."""
    if image.array.size == 0:
        raise DataError(f"{name}: image is empty, array shape {tuple(image.array.shape)}")


def has_nonfinite(image: Image | np.ndarray) -> bool:
    """True when the array holds NaN or +-Inf (integer arrays never do)."""
    arr = image.array if isinstance(image, Image) else np.asarray(image)
    if not np.issubdtype(arr.dtype, np.inexact):
        return False
    return not bool(np.isfinite(arr).all())


def normalise_dtype(arr: np.ndarray, writer: str) -> np.ndarray:
    """Integer and bool maps in the smallest fitting integer type, floats as float32.

    Raises:
        DataError: any other dtype (``writer`` names the format in the message).
    """
    arr = np.asarray(arr)
    if arr.dtype == bool or np.issubdtype(arr.dtype, np.integer):
        return arr.astype(smallest_int_dtype(arr), copy=False)
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32, copy=False)
    raise DataError(f"{writer} writer: unsupported array dtype {arr.dtype} (expected integer, bool or float)")


def smallest_int_dtype(array: np.ndarray) -> np.dtype:
    """The smallest of uint8, int16, int32, int64 that holds every value of an integer/bool array."""
    if array.dtype == bool or array.size == 0:
        return np.dtype(np.uint8)
    lo, hi = int(array.min()), int(array.max())
    for dt in (np.uint8, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int64)


IMAGE_SUFFIXES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".bmp",
    ".gif",
    ".nii",
    ".nii.gz",
    ".nrrd",
    ".mha",
)


def is_image_file(p: Path) -> bool:
    """A file whose name ends in an image suffix medsight reads (DICOM series are found by content)."""
    return p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)
