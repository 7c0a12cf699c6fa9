"""Helpers shared by the data-layer tests (a module name unique across the test tree)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsight.io import Image, write_image


def write_nii(
    path: Path,
    array: np.ndarray,
    spacing: tuple[float, ...] | None = None,
    origin: tuple[float, ...] | None = None,
) -> Path:
    """Write a one-channel array (spatial axes only) as NIfTI."""
    return write_image(Image.from_array(array, spacing=spacing, origin=origin, channel_first=False), path)
