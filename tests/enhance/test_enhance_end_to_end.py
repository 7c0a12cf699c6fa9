"""A denoising run on the tiny example: predict writes enhanced images in the input's geometry and format,
plan.json records the degradation, evaluate runs every baseline beside ours; a k-space run refuses images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medsight import api
from medsight.errors import DataError
from medsight.io import read_image
from medsight.task_registry import get_task


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory):
    return get_task("enhance").example(tmp_path_factory.mktemp("enhance") / "data")


@pytest.fixture(scope="module")
def noise_run(example, tmp_path_factory: pytest.TempPathFactory) -> Path:
    overrides = [o for o in example.quick if not o.startswith("plan.network_kwargs")]
    overrides += ["plan.degradation=rician:0.05", "plan.network_kwargs={base_filters: 4}"]
    return api.train(example.dataset, task="enhance", overrides=overrides,
                     out=tmp_path_factory.mktemp("runs"), measure=False)  # fmt: skip


def test_plan_records_the_degradation(noise_run: Path) -> None:
    plan = json.loads((noise_run / "plan.json").read_text())
    assert plan["degradation"] == "rician:0.05" and plan["degradation_settings"]["sigma"] == 0.05
    assert plan["network"] == "residual_unet" and not plan["simulated_kspace"]
    assert set(plan["baseline_params"]) == {"tv", "nlm"}  # tuned on validation


def test_evaluate_has_every_baseline(noise_run: Path) -> None:
    summary = json.loads((noise_run / "eval" / "val" / "summary.json").read_text())
    assert {"ours", "input", "tv", "nlm", "wavelet"} <= set(summary)
    assert set(summary["info"]["seconds_per_slice"]) == {"ours", "input", "tv", "nlm", "wavelet"}
    assert list((noise_run / "eval" / "val" / "panels").glob("best-*.png"))


def test_predict_keeps_geometry_and_format(noise_run: Path, example, tmp_path: Path) -> None:
    source = example.dataset / "test" / "test00.nii.gz"
    out = api.predict(noise_run, source, tmp_path / "enhanced.nii.gz")[0]
    a, b = read_image(source), read_image(out)
    assert b.same_geometry(a) and b.array.dtype == np.float32 and np.isfinite(b.array).all()
    with pytest.raises(DataError, match="would overwrite an input"):
        api.predict(noise_run, source, source, overwrite=True)


def test_kspace_run_refuses_images_but_reads_h5(example, tmp_path: Path) -> None:
    run = api.train(
        example.dataset, task="enhance", overrides=example.quick, out=tmp_path / "runs", measure=False
    )
    plan = json.loads((run / "plan.json").read_text())
    assert plan["network"] == "kspace_cascade" and plan["simulated_kspace"]
    with pytest.raises(DataError, match="reconstructs k-space"):
        api.predict(run, example.dataset / "test" / "test00.nii.gz", tmp_path / "x.nii.gz")
    from medsight.tasks.enhance import degrade

    h5 = degrade(example.dataset / "test" / "test01.nii.gz", tmp_path / "k.h5", "kspace:4x")[0]
    import h5py

    out = api.predict(run, h5, tmp_path / "recon.h5")[0]
    with h5py.File(out) as f:
        assert f["reconstruction"].shape == (3, 32, 32)


def test_attack_adapter_scores_the_outputs(noise_run: Path) -> None:
    from medsight.runs import open_run

    adapter = get_task("enhance").attack_adapter(open_run(noise_run), "val", max_cases=1)
    batch = adapter.batches[0]
    out = adapter.forward(batch.x)
    assert out.shape == batch.y.shape and adapter.loss(out, batch.y).shape == (len(batch.case_ids),)
    score = adapter.score([out], [batch])
    assert set(score) == {"ssim", "psnr"} and 0 < score["ssim"] <= 1
