"""Tiny trained runs shared by the deployment tests: a 2D segmenter (fundus phantom) and a binary
classifier (bar images), trained once per session in a few seconds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import testkit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "classify"))

from classify_testutils import medmnist_like  # noqa: E402

from testkit import SEGMENT_QUICK  # noqa: E402

CLASSIFY_QUICK = [*testkit.CLASSIFY_QUICK, "train.max_iterations=20", "train.iterations_per_epoch=10"]


@pytest.fixture(scope="session")
def fundus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medsight.data import make_phantom_dataset

    return make_phantom_dataset(
        tmp_path_factory.mktemp("data") / "fundus", kind="fundus2d", n_train=4, n_test=3, seed=3, size=48
    )


@pytest.fixture(scope="session")
def segment_run(fundus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medsight import api

    return api.train(fundus, overrides=SEGMENT_QUICK, out=tmp_path_factory.mktemp("runs"), measure=False)


@pytest.fixture(scope="session")
def classify_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medsight import api

    data = medmnist_like(tmp_path_factory.mktemp("data") / "bars.npz", n=(32, 16, 16))
    return api.train(
        data, task="classify", overrides=CLASSIFY_QUICK, out=tmp_path_factory.mktemp("runs"), measure=False
    )
