"""A tiny synthetic anomaly dataset, for the demo and the tests that run every verb on every family:
smooth grey 32x32 pictures (class ``normal``), and the same kind of picture with a bright square in it
(class ``anomalous``), written as class folders ``{train,val,test}/{normal,anomalous}/*.png``.

Deterministic in ``seed``. The training split holds a few anomalous pictures too: the family must leave
them out (it trains on normal cases only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsight.data.phantoms import ensure_empty_dest
from medsight.utils import atomic_folder

SIZE = 32
COUNTS = {"train": (32, 6), "val": (10, 10), "test": (6, 6)}  # (normal, anomalous) per split


def pictures(
    n: int, anomalous: bool, rng: np.random.Generator, size: int = SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 pictures ``(n, size, size)`` (a smooth blob on a dark background) and their anomaly masks."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = np.empty((n, size, size), np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(0.4, 0.6, size=2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / rng.uniform(0.04, 0.06))
        img = 40 + 120 * blob + rng.normal(0, 4, (size, size))
        if anomalous:
            r, c = rng.integers(4, size - 10, size=2)
            img[r : r + 6, c : c + 6] = 250
            masks[i, r : r + 6, c : c + 6] = 1
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    return images, masks


def make_anomaly_example(dest: str | Path, seed: int = 0) -> Path:
    """Write the example dataset into the new folder ``dest`` and return it."""
    from PIL import Image as PILImage

    dest = Path(dest)
    ensure_empty_dest(dest)
    rng = np.random.default_rng(seed)
    with atomic_folder(dest) as tmp:
        for split, counts in COUNTS.items():
            for name, n in zip(("normal", "anomalous"), counts, strict=True):
                folder = tmp / split / name
                folder.mkdir(parents=True)
                for i, img in enumerate(pictures(n, name == "anomalous", rng)[0]):
                    PILImage.fromarray(img).save(folder / f"{split}_{i:03d}.png")
    return dest
