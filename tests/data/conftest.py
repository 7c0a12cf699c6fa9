"""Fixtures for the data-layer tests: tiny synthetic datasets made on the fly, the real-data folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from data_testutils import write_nii

from medsight.data import make_phantom_dataset


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fingerprint caches go to a per-test folder, never the user's home."""
    monkeypatch.setenv("MEDSIGHT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def fundus_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantom_dataset(
        tmp_path_factory.mktemp("ph") / "fundus", "fundus2d", n_train=4, n_test=2, size=64
    )


@pytest.fixture(scope="session")
def brain_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantom_dataset(
        tmp_path_factory.mktemp("ph") / "brain", "brain3d", n_train=3, n_test=1, size=24
    )


MsdMaker = Callable[..., Path]


@pytest.fixture
def make_msd(tmp_path: Path) -> MsdMaker:
    """Build a tiny nnU-Net v2 folder: ``make_msd(n_cases=3, shape=(8, 8, 6), channels=1, labels=...)``.

    Images are random floats, labels a cube of 1 (and 2 when declared) in each case.
    """

    def make(
        n_cases: int = 3,
        shape: tuple[int, ...] = (8, 8, 6),
        channels: int = 1,
        labels: dict[str, int] | None = None,
        name: str = "ds",
    ) -> Path:
        root = tmp_path / name
        labels = labels or {"background": 0, "organ": 1}
        rng = np.random.default_rng(0)
        for i in range(n_cases):
            cid = f"case_{i:03d}"
            for c in range(channels):
                write_nii(
                    root / "imagesTr" / f"{cid}_{c:04d}.nii.gz", rng.normal(100, 10, shape).astype(np.float32)
                )
            lab = np.zeros(shape, dtype=np.uint8)
            lab[tuple(slice(1, 4) for _ in shape)] = 1
            if 2 in labels.values():
                lab[tuple(slice(4, 6) for _ in shape)] = 2
            write_nii(root / "labelsTr" / f"{cid}.nii.gz", lab)
        meta = {
            "channel_names": {str(c): "MR" for c in range(channels)},
            "labels": labels,
            "numTraining": n_cases,
            "file_ending": ".nii.gz",
        }
        (root / "dataset.json").write_text(json.dumps(meta))
        return root

    return make
