"""A synthetic classification dataset, for demos and tests (no download needed): grey pictures with a
bright bar, ``vertical`` or ``horizontal``, written as class folders ``{train,val,test}/<class>/*.png``.

Flips and small rotations keep the class, as they do for most medical images. Deterministic in ``seed``.

Example::

    root = make_bar_dataset("runs/bars", n_train=64, n_val=16, n_test=16)
    data = load_classification(root)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsight.data.phantoms import ensure_empty_dest
from medsight.errors import DataError
from medsight.utils import atomic_folder

BAR_CLASSES = ("horizontal", "vertical")


def bar_images(n: int, size: int = 28, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, size, size) of dark noise with a bright bar; label 1 when the bar is vertical."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 60, size=(n, size, size)).astype(np.uint8)
    long, thick = size // 2, max(2, size // 8)
    for i, y in enumerate(labels):
        r, c = rng.integers(2, size - long - 2, size=2)
        rows, cols = (
            (slice(r, r + long), slice(c, c + thick)) if y else (slice(r, r + thick), slice(c, c + long))
        )
        images[i, rows, cols] = 220
    return images, labels


def make_bar_dataset(
    dest: str | Path, n_train: int = 64, n_val: int = 16, n_test: int = 16, size: int = 28, seed: int = 0
) -> Path:
    """Write ``dest/{train,val,test}/{horizontal,vertical}/<split>_<i>.png`` and return ``dest``.

    Raises:
        DataError: counts below 2 (each class needs a case), a size below 16, or a non-empty ``dest``.
    """
    from PIL import Image as PILImage

    if min(n_train, n_val, n_test) < 2 or size < 16:
        counts = (n_train, n_val, n_test)
        raise DataError(f"bars: need >= 2 cases per split and size >= 16; found {counts}, {size}")
    dest = Path(dest)
    ensure_empty_dest(dest)
    with atomic_folder(dest) as tmp:
        for stream, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
            images, labels = bar_images(n, size, seed=seed * 3 + stream)
            for i, (img, y) in enumerate(zip(images, labels, strict=True)):
                folder = tmp / split / BAR_CLASSES[int(y)]
                folder.mkdir(parents=True, exist_ok=True)
                PILImage.fromarray(img).save(folder / f"{split}_{i:03d}.png")
    return dest
