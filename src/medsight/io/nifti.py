"""NIfTI-1/2 (.nii, .nii.gz) with nibabel.

NIfTI stores a RAS+ affine; medsight keeps LPS, so rows 0 and 1 of the affine flip on read and back
on write. A 4D file becomes channels; a 2D file becomes a 2D image. Integer files without intensity
scaling stay integer (label maps keep their values); everything else is read as float32.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import DataError
from medsight.io.image import Image
from medsight.utils import atomic_write

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _load(path: Path) -> tuple[Any, np.ndarray]:
    import nibabel as nib

    try:
        if path.name.lower().endswith((".nii", ".nii.gz")):
            img = nib.load(str(path))
        else:  # a forced read of a file named otherwise: decide by content
            raw = path.read_bytes()
            raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
            klass = nib.Nifti2Image if int.from_bytes(raw[:4], "little") == 540 else nib.Nifti1Image
            img = klass.from_bytes(raw)
        data = np.asarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types (ImageFileError, EOFError, zlib.error, ...)
        raise DataError(f"{path}: cannot read NIfTI ({type(exc).__name__}: {exc})") from exc
    return img, data


def _to_channels(path: Path, data: np.ndarray) -> np.ndarray:
    if data.ndim == 5 and data.shape[3] == 1:  # (x, y, z, t=1, c): the NIfTI vector layout
        if data.shape[2] == 1:  # a 2D multi-channel image, as write_nifti stores it
            return np.moveaxis(data[:, :, 0, 0, :], 2, 0)
        data = data[:, :, :, 0, :]
    if data.ndim == 2:
        return data[None]
    if data.ndim == 3:
        return data[None]
    if data.ndim == 4:
        return np.moveaxis(data, 3, 0)
    raise DataError(f"{path}: NIfTI data must have 2 to 4 dimensions, found shape {data.shape}")


def _geometry(affine_ras: np.ndarray, nd: int) -> tuple[tuple[float, ...], tuple[float, ...], np.ndarray]:
    lps = _RAS_TO_LPS @ np.asarray(affine_ras, dtype=np.float64)
    lin = lps[:3, :3]
    spacing = np.linalg.norm(lin, axis=0)
    spacing = np.where(spacing > 0, spacing, 1.0)
    direction = lin / spacing
    origin = lps[:3, 3]
    if nd == 2:
        return tuple(spacing[:2]), tuple(origin[:2]), direction[:2, :2]
    return tuple(spacing), tuple(origin), direction


def read_nifti(path: str | Path) -> Image:
    """Read a NIfTI file into an :class:`Image` (LPS geometry, channel-first array).

    Raises:
        DataError: the file is corrupt, truncated or has an unsupported number of dimensions.
    """
    path = Path(path)
    img, data = _load(path)
    if data.size == 0:
        raise DataError(f"{path}: NIfTI holds no voxels, shape {data.shape}")
    on_disk = np.dtype(img.get_data_dtype())
    if np.issubdtype(data.dtype, np.integer) or data.dtype == bool:
        data = data.astype(data.dtype.newbyteorder("="), copy=False)
    else:
        data = data.astype(np.float32, copy=False)
    array = np.ascontiguousarray(_to_channels(path, data))
    spacing, origin, direction = _geometry(img.affine, array.ndim - 1)
    hdr = img.header
    sform_code = int(hdr["sform_code"]) if "sform_code" in hdr else 0
    qform_code = int(hdr["qform_code"]) if "qform_code" in hdr else 0
    meta = {
        "source": str(path),
        "format": "nifti",
        "dtype": on_disk.name,
        "sform_code": sform_code,
        "qform_code": qform_code,
    }
    return Image(array=array, spacing=spacing, origin=origin, direction=direction, meta=meta)


def affine_ras(image: Image) -> np.ndarray:
    """The 4x4 NIfTI (RAS+) affine of ``image`` (2D images are embedded in 3D)."""
    aff = np.eye(4)
    nd = image.ndim
    aff[:nd, :nd] = image.direction @ np.diag(image.spacing)
    aff[:nd, 3] = image.origin
    return _RAS_TO_LPS @ aff


def storage_array(image: Image) -> np.ndarray:
    """The array as NIfTI stores it: channels last, integer maps in the smallest fitting int type.

    A 2D image with several channels is stored in the 5D vector layout ``(x, y, 1, 1, C)``.
    """
    from medsight.io.readers import normalise_dtype

    arr = normalise_dtype(image.array, "NIfTI")
    if arr.shape[0] == 1:
        return arr[0]
    if image.ndim == 2:
        return np.moveaxis(arr, 0, -1)[:, :, None, None, :]
    return np.moveaxis(arr, 0, -1)


def write_nifti(image: Image, path: str | Path) -> Path:
    """Write ``image`` to ``path`` (.nii or .nii.gz) atomically, geometry converted back to RAS.

    The sform and qform codes read from a NIfTI (``meta['sform_code']``/``meta['qform_code']``) are
    kept; a new file gets code 1 (scanner) for both.
    """
    import nibabel as nib

    path = Path(path)
    data = storage_array(image)
    aff = affine_ras(image)
    nii = nib.Nifti1Image(data, aff)
    if data.ndim == 5:
        nii.header.set_intent("vector")
    sform = int(image.meta.get("sform_code") or 1)
    qform = int(image.meta.get("qform_code") or 1)
    nii.set_sform(aff, code=sform)
    nii.set_qform(aff, code=qform)
    nii.header.set_xyzt_units("mm", "sec")

    def write(tmp: Path) -> None:
        nib.save(nii, str(tmp))

    return atomic_write(path, write)
