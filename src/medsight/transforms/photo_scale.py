"""Scale from the image itself, for photographs without a physical spacing (fundus, dermoscopy, ...).

A fundus camera of higher resolution shows the same retina with more pixels: a network that learnt
vessels 6 px wide meets vessels 10 px wide. Where a structure fixes the scale, each image is resampled
so that structure has the size it had in training:

- ``fov-diameter``: the circular field of view of a fundus photograph (the bright disc on a dark
  background), measured as its widest row or column;
- ``image-size``: the longer side of the image (dermoscopy and other photographs framed on the finding).

The planner stores the method and the training median (:class:`medsight.planning.plan.PhotoScale`);
:func:`scale_factor` gives the factor one image is resampled by, at training and at prediction alike.
numpy / scipy only: the PyTorch path and the torch-free runtime share it.

Example:
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:100, :120]
    >>> disc = ((yy - 50) ** 2 + (xx - 60) ** 2 < 40**2) * 150.0
    >>> round(fov_diameter(np.stack([disc] * 3)))
    79
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from medsight.errors import DataError

if TYPE_CHECKING:
    from medsight.planning.plan import PhotoScale

DARK = 0.2  # field-of-view threshold: this share of the way from the border's level to the bright level
BORDER_PERCENTILE = 1  # the dark border's level (a field of view leaves at least 5% of the image outside it)
MIN_FOV_FRACTION = 0.2  # a disc covering less of the image is not a field of view
MAX_FOV_FRACTION = 0.95  # one covering more leaves no dark border: not a fundus-style field of view
DISC_SHARE = 0.9  # of the training images that must show a field of view for ``fov-diameter``
SAME_SCALE = 0.05  # within this of the training scale an image is not resampled (same camera)


def fov_diameter(array: np.ndarray) -> float | None:
    """The diameter in pixels of a photograph's circular field of view ``(C, H, W)``, or None when the
    image shows none (no dark border around one bright region)."""
    from scipy import ndimage

    grey = np.asarray(array, dtype=np.float32).mean(axis=0)
    # levels from the 1st and 99th percentiles, so a lifted black (lower contrast, gamma, a grey border)
    # still leaves the disc above the threshold
    low, high = (float(v) for v in np.percentile(grey, [BORDER_PERCENTILE, 99]))
    if high <= low:
        return None
    components, n = ndimage.label(grey > low + DARK * (high - low))
    if n == 0:
        return None
    sizes = np.bincount(components.ravel())[1:]
    mask = ndimage.binary_fill_holes(components == int(np.argmax(sizes)) + 1)
    if not MIN_FOV_FRACTION <= mask.mean() <= MAX_FOV_FRACTION:
        return None
    widest = max(np.percentile(mask.sum(axis=1), 99), np.percentile(mask.sum(axis=0), 99))
    return float(widest)


def image_size(array: np.ndarray) -> float:
    """The longer side of a 2D image ``(C, H, W)`` in pixels."""
    return float(max(array.shape[1:]))


def measure(array: np.ndarray, method: str) -> float | None:
    """The size ``method`` measures on one image (None: the image does not show it)."""
    return fov_diameter(array) if method == "fov-diameter" else image_size(array)


def choose_method(images: Iterable[np.ndarray]) -> tuple[str, float, str]:
    """(method, the training median of its size, why) for 2D photographs ``(C, H, W)``."""
    arrays = list(images)
    if not arrays:
        raise DataError("photo scale: no training images to measure")
    diameters = [fov_diameter(a) for a in arrays]
    found = [d for d in diameters if d is not None]
    if len(found) >= DISC_SHARE * len(arrays):
        why = (
            f"a circular field of view in {len(found)}/{len(arrays)} training images (fundus-style): "
            f"each image is resampled so its field-of-view diameter is the training median"
        )
        return "fov-diameter", float(np.median(found)), why
    why = (
        "photographs without a physical spacing and without a field-of-view disc: each image is resampled "
        "so its longer side is the training median (set plan.photo_scale=null for tiles whose pixel size "
        "is fixed, e.g. microscopy at one magnification)"
    )
    return "image-size", float(np.median([image_size(a) for a in arrays])), why


def scale_factor(array: np.ndarray, scale: PhotoScale) -> tuple[float, float | None]:
    """(how much one image ``(C, H, W)`` is enlarged (< 1: shrunk) to the training scale, the size
    measured on it): the training median over this image's size; 1 when within SAME_SCALE of it (the
    training camera's images are left as they are) or when the image shows no field of view (size None)."""
    size = measure(array, scale.method)
    if size is None or size <= 0:
        return 1.0, None
    factor = scale.reference_px / size
    return (1.0 if abs(factor - 1) <= SAME_SCALE else factor), size
