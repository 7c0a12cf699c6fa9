"""Training batches for segmentation: random patches with foreground oversampling, augmented.

Cases are preprocessed once and held in memory; a step never reads a file. A share
(``plan.foreground_oversample``) of the patches is centred on a voxel of a randomly chosen
foreground class, as nnU-Net does, so small structures are seen often enough.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from medsight.tasks.segment.planning import Plan
from medsight.transforms.segmentation import Preprocessed, augmentation, labels_to_regions

MAX_FG_POINTS = 20_000  # foreground locations kept per class and case


def _foreground_points(
    label: np.ndarray, values: list[int], rng: np.random.Generator
) -> dict[int, np.ndarray]:
    points = {}
    for v in values:
        idx = np.argwhere(label[0] == v)
        if len(idx) > MAX_FG_POINTS:
            idx = idx[rng.choice(len(idx), MAX_FG_POINTS, replace=False)]
        if len(idx):
            points[v] = idx
    return points


def crop_patch(array: np.ndarray, center: np.ndarray, patch: list[int]) -> np.ndarray:
    """The ``patch``-sized window of ``(C, *spatial)`` around ``center``, zero-padded at the borders."""
    spatial = array.shape[1:]
    start = [int(c) - p // 2 for c, p in zip(center, patch, strict=True)]
    out = np.zeros((array.shape[0], *patch), dtype=array.dtype)
    src, dst = [slice(None)], [slice(None)]
    for s, p, n in zip(start, patch, spatial, strict=True):
        lo, hi = max(s, 0), min(s + p, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = array[tuple(src)]
    return out


class PatchDataset(IterableDataset):
    """An endless stream of augmented ``{"image", "label"}`` batches drawn from preprocessed cases."""

    def __init__(self, cases: list[Preprocessed], plan: Plan, seed: int = 0) -> None:
        super().__init__()
        self.cases = [c for c in cases if c.label is not None]
        self.plan = plan
        self.seed = seed
        fg_values = [v for v in plan.label_values if v != 0]
        rng = np.random.default_rng(seed)
        self.points = [_foreground_points(c.label, fg_values, rng) for c in self.cases]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, worker])
        augment = augmentation(self.plan, seed=int(rng.integers(2**31))) if self.plan.augment else None
        while True:
            yield self._batch(rng, augment)

    def _batch(self, rng: np.random.Generator, augment: Any) -> dict[str, torch.Tensor]:
        images, labels = [], []
        for _ in range(self.plan.batch_size):
            image, label = self._patch(rng)
            if augment is not None:
                out = augment({"image": torch.from_numpy(image), "label": torch.from_numpy(label)})
                image, label = out["image"], out["label"]
            images.append(torch.as_tensor(image, dtype=torch.float32))
            labels.append(torch.as_tensor(label))
        return {"image": torch.stack(images), "label": torch.stack(labels)}

    def _patch(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        i = int(rng.integers(len(self.cases)))
        case, points = self.cases[i], self.points[i]
        patch = self.plan.patch_size
        if points and rng.random() < self.plan.foreground_oversample:
            cls = list(points)[int(rng.integers(len(points)))]
            center = points[cls][int(rng.integers(len(points[cls])))]
        else:
            low = [p // 2 for p in patch]
            high = [
                max(lo + 1, s - (p - p // 2) + 1)
                for lo, s, p in zip(low, case.image.shape[1:], patch, strict=True)
            ]
            center = np.array(
                [
                    int(rng.integers(lo, hi)) if s >= p else s // 2
                    for lo, hi, s, p in zip(low, high, case.image.shape[1:], patch, strict=True)
                ]
            )
        image = crop_patch(case.image, center, patch)
        label = crop_patch(case.label, center, patch)
        return image, training_target(label, self.plan)


def training_target(label: np.ndarray, plan: Plan) -> np.ndarray:
    """A label map as the loss expects it: region masks (R, *spatial) or class indices (1, *spatial)."""
    return labels_to_regions(label, plan.regions) if plan.regions else _to_indices(label, plan.label_values)


def _to_indices(label: np.ndarray, values: list[int]) -> np.ndarray:
    """Label values -> class indices 0..K-1 (int64, shape (1, *patch))."""
    if values == list(range(len(values))):
        return label.astype(np.int64)
    lut = np.zeros(max(values) + 1, dtype=np.int64)
    lut[values] = np.arange(len(values))
    return lut[label.astype(np.int64)]


def patch_loader(cases: list[Preprocessed], plan: Plan, seed: int, num_workers: int) -> DataLoader:
    """A DataLoader over :class:`PatchDataset` (batches are built inside the dataset)."""
    return DataLoader(
        PatchDataset(cases, plan, seed),
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        worker_init_fn=_worker_init if num_workers else None,
        prefetch_factor=4 if num_workers else None,
    )


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def default_workers(requested: int | None = None) -> int:
    """Loader worker processes from the core count: none on 1-2 cores, else one per 4 cores (at most 4).

    On 2 cores a worker process competes with the training step's own threads, and OpenMP threads that
    lose their core stall at every barrier: preparing the batch in the main process is faster there.
    """
    from medsight.utils import cpu_count

    if requested is not None:
        return requested
    cores = cpu_count()
    return 0 if cores <= 2 else min(4, max(1, cores // 4))
