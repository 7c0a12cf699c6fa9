"""Tiny synthetic data for the anomaly tests: normal pictures and pictures with a bright square."""

from __future__ import annotations

import numpy as np

from medsight.data.classification import ClassificationData
from medsight.data.spec import Case
from medsight.tasks.anomaly.example import pictures


def tiny_data(
    n_normal: int = 24, n_anomalous: int = 8, seed: int = 0, names: tuple[str, str] = ("normal", "lesion")
) -> ClassificationData:
    """A two-class in-memory dataset of 32x32 uint8 pictures (class 0 normal, class 1 anomalous);
    anomalous cases carry their masks in ``extra["mask"]``."""
    rng = np.random.default_rng(seed)
    splits = {}
    for split in ("train", "val", "test"):
        normal, _ = pictures(n_normal, False, rng)
        bad, masks = pictures(n_anomalous, True, rng)
        cases = [Case(f"{split}_n{i}", classes=0, array=im[None]) for i, im in enumerate(normal)]
        cases += [
            Case(f"{split}_a{i}", classes=1, array=im[None], extra={"mask": m})
            for i, (im, m) in enumerate(zip(bad, masks, strict=True))
        ]
        splits[split] = cases
    return ClassificationData("tiny", "binary", list(names), splits, dim=2, channels=1)
