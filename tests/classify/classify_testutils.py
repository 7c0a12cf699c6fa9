"""Tiny separable classification data: a bright vertical (label 1) or horizontal (label 0) bar.

Flips and small rotations (the training augmentation) keep the class, as they do for most images."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def bar_images(n: int, size: int = 28, seed: int = 0, rgb: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W[, 3]) with dark noise and a bright bar; label 1 when it is vertical."""
    from medsight.data.phantom_bars import bar_images as grey_bars

    images, labels = grey_bars(n, size, seed)
    return (np.repeat(images[..., None], 3, axis=-1) if rgb else images), labels


def medmnist_like(path: Path, n: tuple[int, int, int] = (64, 24, 24), size: int = 28) -> Path:
    """A MedMNIST-layout .npz (train/val/test) of bar images."""
    arrays = {}
    for seed, (split, count) in enumerate(zip(("train", "val", "test"), n, strict=True)):
        images, labels = bar_images(count, size, seed=seed)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels[:, None]
    np.savez(path, **arrays)
    return path


def class_folders(root: Path, n: int = 12, size: int = 32) -> Path:
    """root/{horizontal,vertical}/*.png."""
    from PIL import Image as PILImage

    images, labels = bar_images(n, size, seed=5)
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        folder = root / ("vertical" if y else "horizontal")
        folder.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(img).save(folder / f"img{i:03d}.png")
    return root
