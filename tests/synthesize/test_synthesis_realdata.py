"""One learning test on real data: a VAE trained on BreastMNIST's training ultrasound images for a few
hundred steps reconstructs the unseen test images far better than the mean training image does, and its
prior samples are scored on the run's own encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medsight import api
from medsight.utils import shared_data_root

pytestmark = pytest.mark.realdata


def test_vae_reconstructs_unseen_breast_ultrasound(tmp_path: Path) -> None:
    root = shared_data_root(None)
    if root is None or not (root / "medmnist" / "breastmnist.npz").is_file():
        pytest.skip("../shared/data/medmnist/breastmnist.npz is absent: real-data test skipped")
    overrides = [
        "plan.model=vae",
        "train.max_iterations=120",
        "train.iterations_per_epoch=100",
        "train.progress=false",
        "plan.encoder_steps=20",
        "plan.beta=0.1",
    ]
    run = api.train(
        root / "medmnist" / "breastmnist.npz", task="synthesize", overrides=overrides, out=tmp_path
    )
    from medsight.runs import open_run
    from medsight.tasks.synthesize.pipeline import cases_of_split, load_model, stack

    opened = open_run(run)
    test = stack(cases_of_split(opened, "test"), opened.plan)["image"]
    train = stack(cases_of_split(opened, "train"), opened.plan)["image"]
    with torch.inference_mode():
        recon = load_model(opened, "cpu")(test)
    vae_mse = float((recon - test).pow(2).mean())
    mean_mse = float((train.mean(0, keepdim=True) - test).pow(2).mean())
    assert vae_mse < 0.8 * mean_mse, (vae_mse, mean_mse)
    summary = api.evaluate(run, split="test")["all"]
    assert summary["fid"]["mean"] > 0 and 0 <= summary["memorised_share"]["mean"] <= 1
