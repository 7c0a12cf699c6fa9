"""A tiny synthetic 2D dataset for the register family (the demo and the tests of every verb): head-like
phantoms (an ellipse, a darker ring, bright blobs) with label maps, in ``images/`` and ``labels/``, and
smoothly deformed copies of two of them as predict inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def phantom(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A smooth (size, size) head-like image in [0, 1] and its label map (1 head, 2 ring, 3.. blobs)."""
    from scipy import ndimage

    yy, xx = np.mgrid[:size, :size] / (size - 1) * 2 - 1
    a, b = rng.uniform(0.7, 0.85), rng.uniform(0.55, 0.75)
    r = (xx / a) ** 2 + (yy / b) ** 2
    labels = np.where(r < 1, 1, 0) + np.where((r > 0.7) & (r < 1), 1, 0)
    for i in range(3):
        (cx, cy), rad = rng.uniform(-0.35, 0.35, 2), rng.uniform(0.1, 0.2)
        labels = np.where((((xx - cx) ** 2 + (yy - cy) ** 2) < rad**2) & (r < 0.6), 3 + i, labels)
    intensity = np.array([0.0, 0.5, 0.9, 0.2, 0.7, 1.0])
    img = ndimage.gaussian_filter(intensity[labels], 0.8)
    return img.astype(np.float32), labels.astype(np.uint8)


def make_example(folder: Path, n: int = 4, size: int = 40) -> tuple[Path, Path]:
    """Write the dataset into the new folder ``folder``; return (dataset root, predict inputs)."""
    from scipy import ndimage

    from medsight.io import Image, write_image

    rng = np.random.default_rng(0)
    inputs = folder / "inputs"
    for i in range(n):
        img, lab = phantom(size, rng)
        write_image(Image.from_array(img[None]), folder / "images" / f"case{i:02d}.nii.gz")
        write_image(Image.from_array(lab[None]), folder / "labels" / f"case{i:02d}.nii.gz")
        if i < 2:
            shift = ndimage.shift(img, rng.uniform(-2, 2, 2), order=1)
            write_image(Image.from_array(shift[None]), inputs / f"moving{i:02d}.nii.gz")
    return folder, inputs
