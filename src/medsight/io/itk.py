"""NRRD (.nrrd, .nhdr) and MetaImage (.mha, .mhd) through SimpleITK.

SimpleITK already works in LPS; ``GetArrayFromImage`` returns ``(z, y, x[, components])``, which is
transposed to medsight's ``(C, i, j, k)`` (2D images: ``(C, i, j)``, ITK index order, like NIfTI).
Vector pixels become channels; a 4D image becomes channels over its last axis.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import DataError
from medsight.io.image import Image
from medsight.utils import atomic_write


def _read(path: Path) -> Any:
    import SimpleITK as sitk

    try:
        return sitk.ReadImage(str(path))
    except Exception as exc:  # SimpleITK raises RuntimeError with ITK's message
        msg = " ".join(str(exc).split())[-300:]
        raise DataError(f"{path}: cannot read with SimpleITK ({type(exc).__name__}: {msg})") from exc


def read_itk(path: str | Path) -> Image:
    """Read a NRRD or MetaImage file into an :class:`Image` (LPS geometry, channel-first).

    Raises:
        DataError: the file is unreadable or has fewer than 2 or more than 4 dimensions.
    """
    import SimpleITK as sitk

    path = Path(path)
    img = _read(path)
    dim = img.GetDimension()
    if dim not in (2, 3, 4):
        raise DataError(f"{path}: expected a 2D, 3D or 4D image, found {dim} dimensions")
    arr = sitk.GetArrayFromImage(img)
    if arr.size == 0:
        raise DataError(f"{path}: image holds no voxels, size {img.GetSize()}")
    vector = img.GetNumberOfComponentsPerPixel() > 1
    if not vector:
        arr = arr[..., None]
    arr = np.moveaxis(arr, -1, 0)  # (C, z, y, x) or (C, y, x)
    spatial = dim
    if dim == 4:  # (C=1, t, z, y, x): the 4th axis holds channels
        if vector:
            raise DataError(f"{path}: 4D images with vector pixels are not supported")
        arr, spatial = arr[0], 3
    array = np.ascontiguousarray(np.transpose(arr, (0, *range(spatial, 0, -1))))
    direction = np.reshape(img.GetDirection(), (dim, dim))[:spatial, :spatial]
    meta = {"source": str(path), "format": "itk", "dtype": array.dtype.name}
    return Image(
        array=array,
        spacing=img.GetSpacing()[:spatial],
        origin=img.GetOrigin()[:spatial],
        direction=direction,
        meta=meta,
    )


def to_sitk(image: Image) -> Any:
    """The SimpleITK image for ``image`` (integer maps in the smallest fitting type, floats as float32)."""
    import SimpleITK as sitk

    from medsight.io.readers import normalise_dtype

    arr = normalise_dtype(image.array, "ITK")
    zyx = np.transpose(arr, (*range(image.ndim, 0, -1), 0))  # (k, j, i, C)
    vector = image.channels > 1
    img = sitk.GetImageFromArray(np.ascontiguousarray(zyx if vector else zyx[..., 0]), isVector=vector)
    img.SetSpacing([float(s) for s in image.spacing])
    img.SetOrigin([float(o) for o in image.origin])
    img.SetDirection([float(d) for d in image.direction.ravel()])
    return img


def write_itk(image: Image, path: str | Path, *, compress: bool = True) -> Path:
    """Write ``image`` as .nrrd/.nhdr/.mha/.mhd atomically (zlib-compressed by default, lossless)."""
    import SimpleITK as sitk

    path = Path(path)
    img = to_sitk(image)
    if path.suffix.lower() in (".mhd", ".nhdr"):
        return _write_with_sidecar(img, path, compress)

    def write(tmp: Path) -> None:
        sitk.WriteImage(img, str(tmp), useCompression=compress)

    return atomic_write(path, write)


def _write_with_sidecar(img: Any, path: Path, compress: bool) -> Path:
    """Header + data file pairs: write both in a temporary folder, then move data first, header last."""
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        sitk.WriteImage(img, str(tmpdir / path.name), useCompression=compress)
        header = tmpdir / path.name
        for f in sorted(tmpdir.iterdir()):
            if f != header:
                os.replace(f, path.parent / f.name)
        os.replace(header, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return path
