"""The learned method's torch-free half, shared by ``--run`` (PyTorch) and ``--model`` (ONNX Runtime):
the working grid, the affine pre-alignment, intensity scaling, scaling and squaring of a velocity field
and the field as an ITK transform. The network itself is a function ``(1, 2, *grid) -> (1, dim, *grid)``
(moving and fixed in, a field in voxels along the array axes out).

Arrays here are SimpleITK's order: ``(z, y, x)`` in 3D, ``(y, x)`` in 2D; channel ``a`` of a field is
the displacement along array axis ``a``, and the map is ``x -> x + u(x)`` (MONAI's ``Warp``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Network = Callable[[np.ndarray], np.ndarray]


def working_grid(fixed: Any, spacing: float, size: Sequence[int]) -> Any:
    """An empty SimpleITK image of ``size`` voxels (ITK order x, y, z) at ``spacing`` mm, centred on
    ``fixed``'s field of view, with ``fixed``'s direction: where the network sees both images."""
    import SimpleITK as sitk

    dim = fixed.GetDimension()
    direction = np.asarray(fixed.GetDirection()).reshape(dim, dim)
    centre_index = (np.asarray(fixed.GetSize()) - 1) / 2.0
    centre = np.asarray(fixed.TransformContinuousIndexToPhysicalPoint(centre_index.tolist()))
    half = direction @ (spacing * (np.asarray(size) - 1) / 2.0)
    grid = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    grid.SetSpacing([float(spacing)] * dim)
    grid.SetDirection(direction.ravel().tolist())
    grid.SetOrigin((centre - half).tolist())
    return grid


def scale_intensity(arr: np.ndarray) -> np.ndarray:
    """Intensities to [0, 1] by the 0.5th and 99.5th percentiles (clipped)."""
    lo, hi = np.percentile(arr, [0.5, 99.5])
    return np.clip((arr - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0).astype(np.float32)


def resample_to(img: Any, grid: Any, transform: Any = None) -> np.ndarray:
    """``img`` resampled (linear) onto ``grid`` through ``transform`` (grid point -> image point)."""
    import SimpleITK as sitk

    t = transform if transform is not None else sitk.Transform()
    out = sitk.Resample(img, grid, t, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def pre_align(fixed_w: Any, moving: Any, mode: str, spacing: float) -> Any:
    """The affine pre-alignment: ``classical`` (SimpleITK MI, at the working spacing) or ``none``."""
    import SimpleITK as sitk

    if mode == "none":
        return sitk.AffineTransform(fixed_w.GetDimension())
    from medsight.tasks.register.classical import affine
    from medsight.tasks.register.images import working_image

    return affine(fixed_w, working_image(moving, spacing))


def integrate(velocity: np.ndarray, steps: int) -> np.ndarray:
    """Scaling and squaring of a stationary velocity field ``(dim, *grid)`` (voxels), as MONAI's
    ``DVF2DDF`` (bilinear, zero padding): ``u = v / 2**steps``, then ``u <- u + u(x + u)`` ``steps`` times.
    ``steps`` 0 returns the field as it is (a plain displacement)."""
    from scipy import ndimage

    u = velocity.astype(np.float64) / (2**steps)
    if steps == 0:
        return velocity.astype(np.float64)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in u.shape[1:]], indexing="ij"))
    for _ in range(steps):
        coords = grid + u
        u = u + np.stack(
            [ndimage.map_coordinates(c, coords, order=1, mode="grid-constant", cval=0.0) for c in u]
        )
    return u


def field_image(ddf: np.ndarray, grid: Any) -> Any:
    """A displacement field in voxels (array axes) on ``grid`` as an ITK displacement-field image (mm,
    world axes)."""
    import SimpleITK as sitk

    dim = grid.GetDimension()
    direction = np.asarray(grid.GetDirection()).reshape(dim, dim)
    spacing = np.asarray(grid.GetSpacing())
    index_xyz = np.moveaxis(ddf[::-1], 0, -1)  # (*grid, dim) with components along index x, y, z
    world = (index_xyz * spacing) @ direction.T
    img = sitk.GetImageFromArray(world.astype(np.float64), isVector=True)
    img.CopyInformation(grid)
    return img


@dataclass
class PairArrays:
    """One pair on the working grid: scaled arrays, the grid and the affine pre-alignment."""

    fixed: np.ndarray
    moving: np.ndarray
    grid: Any
    affine: Any

    def network_input(self) -> np.ndarray:
        return np.stack([self.moving, self.fixed])[None].astype(np.float32)


def pair_arrays(fixed: Any, moving: Any, plan: Any) -> PairArrays:
    """The pair as the network sees it (``plan``: spacing, grid_size, affine)."""
    grid = working_grid(fixed, plan.spacing, plan.grid_size)
    f = resample_to(fixed, grid)
    fixed_w = _as_image(f, grid)
    affine = pre_align(fixed_w, moving, plan.affine, plan.spacing)
    m = resample_to(moving, grid, affine)
    return PairArrays(scale_intensity(f), scale_intensity(m), grid, affine)


def _as_image(arr: np.ndarray, grid: Any) -> Any:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.CopyInformation(grid)
    return img


def learned_transform(pair: PairArrays, velocity: np.ndarray, steps: int) -> Any:
    """The fixed -> moving transform: the integrated field on the working grid, then the affine."""
    import SimpleITK as sitk

    ddf = integrate(velocity, steps)
    dft = sitk.DisplacementFieldTransform(field_image(ddf, pair.grid))
    return sitk.CompositeTransform([pair.affine, dft])


def register_with_network(fixed: Any, moving: Any, plan: Any, network: Network) -> Any:
    """Register two SimpleITK images with a network function (see the module docstring)."""
    pair = pair_arrays(fixed, moving, plan)
    velocity = network(pair.network_input())[0]
    return learned_transform(pair, velocity, plan.integration_steps)
