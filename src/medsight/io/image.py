"""The one image type: an array with its geometry.

Conventions (every reader and writer keeps them):

* ``array`` is channel-first: ``(C, *spatial)``, C >= 1, spatial of length 2 or 3.
* Spatial axes are in index order (i, j, k): for volumes that is the NIfTI / ITK voxel order
  (x fastest in physical space, like nibabel's ``get_fdata()``); for 2D pictures it is (row, column).
* ``spacing`` (mm), ``origin`` (mm) and ``direction`` (a ``ndim x ndim`` matrix whose columns are the
  unit vectors of the index axes) describe the physical space in the DICOM/ITK **LPS** convention.
  NIfTI's RAS affine is converted on read and back on write.
* ``meta`` carries format details a writer needs to write back what was read (source path, format,
  DICOM tags of interest, original dtype, ...). It never holds pixel data.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from medsight.errors import ShapeError


@dataclass
class Image:
    """A channel-first array with spacing, origin and direction (LPS)."""

    array: np.ndarray
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim not in (3, 4):
            raise ShapeError("Image.array (C, *spatial)", "3 or 4 dimensions", self.array.shape)
        nd = self.array.ndim - 1
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=np.float64).reshape(nd, nd)
        if len(self.spacing) != nd or len(self.origin) != nd:
            raise ShapeError("Image spacing/origin", f"{nd} values", (len(self.spacing), len(self.origin)))

    @classmethod
    def from_array(
        cls,
        array: np.ndarray,
        spacing: tuple[float, ...] | None = None,
        origin: tuple[float, ...] | None = None,
        direction: np.ndarray | None = None,
        channel_first: bool = True,
        **meta: Any,
    ) -> Image:
        """Wrap an array (``channel_first=False`` adds a channel axis) with default geometry."""
        arr = np.asarray(array)
        if not channel_first:
            arr = arr[None]
        nd = arr.ndim - 1
        return cls(
            array=arr,
            spacing=spacing or (1.0,) * nd,
            origin=origin or (0.0,) * nd,
            direction=np.eye(nd) if direction is None else direction,
            meta=dict(meta),
        )

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return self.array.ndim - 1

    @property
    def channels(self) -> int:
        return int(self.array.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape."""
        return tuple(int(s) for s in self.array.shape[1:])

    @property
    def affine(self) -> np.ndarray:
        """The ``(ndim+1) x (ndim+1)`` index -> LPS millimetre matrix."""
        nd = self.ndim
        aff = np.eye(nd + 1)
        aff[:nd, :nd] = self.direction @ np.diag(self.spacing)
        aff[:nd, nd] = self.origin
        return aff

    def with_array(self, array: np.ndarray, **meta: Any) -> Image:
        """The same geometry around another array (e.g. a label map for this image)."""
        arr = np.asarray(array)
        if arr.ndim == self.ndim:
            arr = arr[None]
        if tuple(arr.shape[1:]) != self.shape:
            raise ShapeError("Image.with_array", self.shape, tuple(arr.shape[1:]))
        return replace(self, array=arr, meta={**self.meta, **meta})

    def same_geometry(self, other: Image, atol: float = 1e-3) -> bool:
        """True when both images share spatial shape, spacing, origin and direction."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=atol)
            and np.allclose(self.origin, other.origin, atol=max(atol, 1e-2))
            and np.allclose(self.direction, other.direction, atol=atol)
        )
