"""NumPy files: plain ``.npy``/``.npz`` arrays, medsight's own ``.npz`` layout, and MedMNIST archives.

A plain array is read as: 2D -> ``(1, H, W)``; 3D -> a volume ``(1, i, j, k)``; 4D -> channel-first
``(C, i, j, k)``; spacing 1, origin 0. :func:`write_numpy` stores ``array``, ``spacing``, ``origin``
and ``direction`` so a round trip is exact. Pickled objects are never loaded.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from medsight.errors import DataError
from medsight.io.image import Image
from medsight.utils import atomic_write

MEDMNIST_SPLITS = ("train", "val", "test")
_GEOMETRY_KEYS = ("array", "spacing", "origin", "direction")


def _load(path: Path) -> dict[str, np.ndarray]:
    try:
        data = np.load(str(path), allow_pickle=False)
        if isinstance(data, np.ndarray):
            return {"": data}
        with data:
            return {key: data[key] for key in data.files}
    except Exception as exc:  # ValueError (pickles), OSError, zipfile.BadZipFile, EOFError ...
        raise DataError(f"{path}: cannot read NumPy file ({type(exc).__name__}: {exc})") from exc


def _plain(path: Path, arr: np.ndarray) -> Image:
    if arr.size == 0:
        raise DataError(f"{path}: array is empty, shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{path}: expected a numeric array, found dtype {arr.dtype}")
    if arr.ndim in (2, 3):
        arr = arr[None]
    elif arr.ndim != 4:
        raise DataError(f"{path}: expected a 2D, 3D or 4D (channel-first) array, found shape {arr.shape}")
    return Image.from_array(np.ascontiguousarray(arr), source=str(path), format="numpy")


def read_numpy(path: str | Path, *, key: str | None = None) -> Image:
    """Read a ``.npy`` array, one array of a ``.npz`` (``key=``), or a medsight ``.npz`` image.

    Raises:
        DataError: unreadable file, missing key, several arrays and no key, empty or non-numeric data.
    """
    path = Path(path)
    arrays = _load(path)
    if key is not None:
        if key not in arrays:
            raise DataError(f"{path}: key {key!r} not found; keys: {', '.join(arrays) or '(none)'}")
        return _plain(path, arrays[key])
    if all(k in arrays for k in _GEOMETRY_KEYS):
        arr = arrays["array"]
        if arr.size == 0:
            raise DataError(f"{path}: array is empty, shape {arr.shape}")
        meta = {"source": str(path), "format": "numpy"}
        spacing, origin, direction = (arrays[k] for k in _GEOMETRY_KEYS[1:])
        return Image(arr, tuple(spacing.tolist()), tuple(origin.tolist()), direction, meta=meta)
    if len(arrays) != 1:
        raise DataError(f"{path}: {len(arrays)} arrays in the file, pass key= (one of {', '.join(arrays)})")
    return _plain(path, next(iter(arrays.values())))


def write_numpy(image: Image, path: str | Path) -> Path:
    """Write ``image`` (array and geometry) to a compressed ``.npz``, or its array alone to ``.npy``.

    A ``.npy`` holds the spatial array for one channel, ``(C, i, j, k)`` for a multi-channel volume;
    a multi-channel 2D image would read back as a volume, so it needs ``.npz``.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy" and image.ndim == 2 and image.channels > 1:
        raise DataError(
            f"{path}: a 2D image with {image.channels} channels needs .npz (a .npy loses the layout)"
        )

    def write(tmp: Path) -> None:
        buf = io.BytesIO()
        if path.suffix.lower() == ".npy":
            np.save(buf, image.array[0] if image.channels == 1 else image.array, allow_pickle=False)
        else:
            np.savez_compressed(
                buf,
                array=image.array,
                spacing=np.asarray(image.spacing),
                origin=np.asarray(image.origin),
                direction=image.direction,
            )
        tmp.write_bytes(buf.getvalue())

    return atomic_write(path, write)


def read_medmnist(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read a MedMNIST ``.npz``: ``{"train": (images, labels), "val": ..., "test": ...}``.

    Images stay as stored (``(N, H, W)``, ``(N, H, W, 3)`` or ``(N, D, H, W)``, uint8). Labels of shape
    ``(N, 1)`` become ``(N,)``; multi-label ``(N, K)`` stay 2D.

    Raises:
        DataError: a key is missing (named), counts disagree, an array is empty or labels not integer.
    """
    path = Path(path)
    arrays = _load(path)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in MEDMNIST_SPLITS:
        for part in ("images", "labels"):
            if f"{split}_{part}" not in arrays:
                raise DataError(
                    f"{path}: MedMNIST key '{split}_{part}' missing; expected "
                    f"{', '.join(f'{s}_images, {s}_labels' for s in MEDMNIST_SPLITS)}; "
                    f"found {', '.join(arrays) or '(none)'}"
                )
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        _check_split(path, split, images, labels)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        out[split] = (images, labels)
    return out


def _check_split(path: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    if images.size == 0 or images.ndim not in (3, 4):
        raise DataError(
            f"{path}: {split}_images: expected (N, H, W[, C]) with N > 0, found shape {images.shape}"
        )
    if labels.shape[0] != images.shape[0] or labels.ndim not in (1, 2):
        raise DataError(
            f"{path}: {split}_labels: expected {images.shape[0]} labels, shape (N,) or (N, K); "
            f"found shape {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {split}_labels: expected integer labels, found dtype {labels.dtype}")
