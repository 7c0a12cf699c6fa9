"""One learning test on real data: an RBM trained on the normal chest X-rays of PneumoniaMNIST (for a
few hundred CD steps) scores the pneumonia images of the test split higher than the normal ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medsight import api
from medsight.utils import shared_data_root

pytestmark = pytest.mark.realdata


def test_rbm_free_energy_separates_pneumonia_from_normal(tmp_path: Path) -> None:
    root = shared_data_root(None)
    if root is None or not (root / "medmnist" / "pneumoniamnist.npz").is_file():
        pytest.skip("../shared/data/medmnist/pneumoniamnist.npz is absent: real-data test skipped")
    overrides = [
        "plan.model=rbm",
        "train.max_iterations=300",
        "train.iterations_per_epoch=100",
        "train.progress=false",
        "train.seed=0",
    ]
    run = api.train(
        root / "medmnist" / "pneumoniamnist.npz", task="anomaly", overrides=overrides, out=tmp_path
    )
    plan = json.loads((run / "plan.json").read_text())
    assert plan["normal_class"] == "normal" and plan["n_normal_train"] < 4708  # normal cases only
    summary = api.evaluate(run, split="test")["all"]
    assert summary["image_auroc"]["ci_low"] > 0.6, summary["image_auroc"]
