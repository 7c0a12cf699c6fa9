"""A tiny synthetic MR-like dataset for the enhance family (the demo and the tests of every verb): brain-
like phantoms (an elliptical head, a darker ring, random bright and dark blobs), smooth and noiseless,
as NIfTI volumes in ``train/`` (one subject each) and ``test/``, and the test volumes' 4x undersampled
k-space (made by :func:`medsight.tasks.enhance.degrade`) as predict inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def phantom(size: int, slices: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth (size, size, slices) head-like phantom in [0, 1]."""
    from scipy import ndimage

    yy, xx = np.mgrid[:size, :size] / (size - 1) * 2 - 1
    vol = np.zeros((size, size, slices), dtype=np.float64)
    a, b = rng.uniform(0.7, 0.85), rng.uniform(0.55, 0.75)
    blobs = [(rng.uniform(-0.4, 0.4, 2), rng.uniform(0.08, 0.2), rng.uniform(-0.4, 0.5)) for _ in range(4)]
    for z in range(slices):
        shrink = 1.0 - 0.05 * abs(z - slices / 2)
        r = (xx / (a * shrink)) ** 2 + (yy / (b * shrink)) ** 2
        img = np.where(r < 1, 0.6, 0.0) + np.where((r > 0.75) & (r < 1), 0.35, 0.0)
        for (cx, cy), rad, amp in blobs:
            img += amp * (((xx - cx) ** 2 + (yy - cy) ** 2) < rad**2) * (r < 0.75)
        vol[..., z] = ndimage.gaussian_filter(np.clip(img, 0, None), 0.8)
    return (vol / vol.max()).astype(np.float32)


def make_example(
    folder: Path, n_train: int = 6, n_test: int = 2, size: int = 32, slices: int = 3
) -> tuple[Path, Path]:
    """Write the dataset into the new folder ``folder``; return (dataset root, predict inputs)."""
    from medsight.io import Image, write_image
    from medsight.tasks.enhance.degrade import degrade

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            vol = phantom(size, slices, rng)
            write_image(
                Image.from_array(vol[None], spacing=(1.0, 1.0, 2.0)),
                folder / split / f"{split}{i:02d}.nii.gz",
            )
    inputs = folder / "inputs"
    degrade(folder / "test", inputs, "kspace:4x", seed=0)
    return folder, inputs
