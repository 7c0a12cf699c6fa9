"""Tiny synthetic datasets of the synthesize family, for the demo and the tests:

* :func:`make_pictures_example`: 16 x 16 grey pictures of two classes (``disc``: a bright disc;
  ``ring``: a bright ring), as class folders ``{train,val,test}/{disc,ring}/*.png``;
* :func:`make_paired_example`: three "subjects", each a folder of two co-registered 3D NIfTI contrasts
  (``<subject>_t1.nii.gz`` and ``<subject>_t2.nii.gz``, where t2 is a fixed non-monotone function of t1
  inside the head), for translation.

Deterministic in ``seed``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsight.data.phantoms import ensure_empty_dest
from medsight.utils import atomic_folder

SIZE = 16
COUNTS = {"train": 24, "val": 8, "test": 6}  # per class


def shape_picture(kind: str, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A uint8 picture: a disc or a ring at a random place, on a noisy dark background."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    cy, cx = rng.uniform(0.35, 0.65, size=2)
    r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    shape = r < 0.25 if kind == "disc" else (r > 0.17) & (r < 0.3)
    img = 30 + 180 * shape + rng.normal(0, 6, (size, size))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_pictures_example(dest: str | Path, seed: int = 0) -> Path:
    """Write the pictures dataset into the new folder ``dest`` and return it."""
    from PIL import Image as PILImage

    dest = Path(dest)
    ensure_empty_dest(dest)
    rng = np.random.default_rng(seed)
    with atomic_folder(dest) as tmp:
        for split, n in COUNTS.items():
            for kind in ("disc", "ring"):
                folder = tmp / split / kind
                folder.mkdir(parents=True)
                for i in range(n):
                    PILImage.fromarray(shape_picture(kind, rng)).save(folder / f"{split}_{i:03d}.png")
    return dest


def head(size: int, slices: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A (size, size, slices) T1-like head and its T2-like contrast (a non-monotone map of the tissues)."""
    yy, xx = np.mgrid[:size, :size] / (size - 1) * 2 - 1
    t1 = np.zeros((size, size, slices), np.float32)
    a, b = rng.uniform(0.7, 0.85), rng.uniform(0.6, 0.8)
    cx, cy = rng.uniform(-0.2, 0.2, 2)
    for z in range(slices):
        r = (xx / a) ** 2 + (yy / b) ** 2
        img = np.where(r < 1, 300.0, 0.0) + np.where((r > 0.7) & (r < 1), 500.0, 0.0)
        img += 400.0 * (((xx - cx) ** 2 + (yy - cy) ** 2) < 0.08) * (r < 0.7)
        t1[..., z] = img * (1 + 0.02 * z)
    tissue = np.round(t1 / 100.0)
    t2 = np.where(t1 > 0, 900.0 - 120.0 * np.abs(tissue - 5), 0.0).astype(np.float32)
    return t1, t2


def make_paired_example(
    dest: str | Path, subjects: int = 3, size: int = 32, slices: int = 6, seed: int = 0
) -> Path:
    """Write the paired-contrast dataset into the new folder ``dest`` and return it."""
    from medsight.io import Image, write_image

    dest = Path(dest)
    ensure_empty_dest(dest)
    rng = np.random.default_rng(seed)
    with atomic_folder(dest) as tmp:
        for s in range(subjects):
            name = f"subj{s:02d}"
            for contrast, vol in zip(("t1", "t2"), head(size, slices, rng), strict=True):
                write_image(
                    Image.from_array(vol[None], spacing=(1.0, 1.0, 1.0)),
                    tmp / name / f"{name}_{contrast}.nii.gz",
                )
    return dest
