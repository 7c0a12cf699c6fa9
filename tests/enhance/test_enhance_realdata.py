"""Learning on real MR: a short denoising run (Rician noise, sigma 5% of the range) trained on one BraTS
subject beats the noisy input on another subject's held-out slices."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medsight import api


@pytest.mark.realdata
def test_denoising_learns_on_held_out_brain_slices(data_root: Path, tmp_path: Path) -> None:
    train = data_root / "brats-tcga" / "TCGA-DU-7294" / "TCGA-DU-7294_t1.nii.gz"
    test = data_root / "brats-tcga" / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-t1n.nii.gz"
    rows = [("a", train, "train"), ("b", test, "test")]
    lines = ["case_id,image,patient_id,split"] + [
        f"{s},{os.path.relpath(p, tmp_path)},{s},{sp}" for s, p, sp in rows
    ]
    (tmp_path / "brain.csv").write_text("\n".join(lines) + "\n")
    overrides = [
        "plan.degradation=rician:0.05",
        "plan.network_kwargs={base_filters: 8}",
        "plan.slice_size=[128, 128]",
        "plan.slices_per_case=6",
        "plan.eval_slices_per_case=2",
        "data.fold=all",
        "train.max_iterations=60",
        "train.iterations_per_epoch=30",
        "train.progress=false",
    ]
    run = api.train(
        tmp_path / "brain.csv", task="enhance", overrides=overrides, out=tmp_path / "runs", measure=False
    )
    summary = api.evaluate(run, split="test")
    ours, noisy = summary["ours"], summary["input"]
    assert ours["psnr"]["mean"] > noisy["psnr"]["mean"] + 1.0, json.dumps(summary["info"])
    assert ours["ssim"]["mean"] > noisy["ssim"]["mean"]
