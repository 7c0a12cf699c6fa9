"""Known answers for the enhancement metrics: scikit-image's PSNR / SSIM on the same arrays, the PSNR and
NMSE formulas by hand, the body mask of a disk, and CIs over subjects (not over cases)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medsight.metrics.enhancement import body_mask, image_metrics, nmse, psnr, ssim, subject_summary


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    ref = np.exp(-((yy - 24) ** 2 + (xx - 20) ** 2) / 150.0) * 3.0 + 0.5
    return ref + rng.normal(0, 0.1, ref.shape), ref


def test_psnr_and_ssim_equal_scikit_image(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, ref = pair
    span = ref.max() - ref.min()
    assert psnr(pred, ref) == pytest.approx(peak_signal_noise_ratio(ref, pred, data_range=span), rel=1e-12)
    assert ssim(pred, ref) == pytest.approx(structural_similarity(ref, pred, data_range=span), rel=1e-12)


def test_psnr_and_nmse_by_hand() -> None:
    ref = np.array([[0.0, 1.0], [2.0, 3.0]])
    pred = ref + np.array([[0.5, 0.0], [0.0, -0.5]])
    mse = (0.25 + 0.25) / 4
    assert psnr(pred, ref) == pytest.approx(10 * math.log10(3.0**2 / mse))
    assert nmse(pred, ref) == pytest.approx(0.5 / (0 + 1 + 4 + 9))
    assert psnr(ref, ref) == math.inf


def test_body_mask_of_a_disk_and_metrics_inside_it(pair: tuple[np.ndarray, np.ndarray]) -> None:
    yy, xx = np.mgrid[:40, :40]
    disk = (((yy - 20) ** 2 + (xx - 20) ** 2) < 100).astype(float)
    mask = body_mask(disk)
    assert mask[20, 20] and not mask[0, 0]
    assert abs(int(mask.sum()) - int(disk.sum())) < 0.6 * disk.sum()  # the disk, dilated by two pixels
    pred, ref = pair
    row = image_metrics(pred, ref)
    m = body_mask(ref)
    _, full = structural_similarity(ref, pred, data_range=ref.max() - ref.min(), full=True)
    assert row["ssim_body"] == pytest.approx(full[m].mean())
    assert row["nmse_body"] == pytest.approx(np.sum((pred - ref)[m] ** 2) / np.sum(ref[m] ** 2))


def test_summary_is_over_subjects() -> None:
    rows = [
        {
            "method": "ours",
            "subject": "a",
            **dict.fromkeys(("psnr", "ssim", "nmse", "psnr_body", "ssim_body", "nmse_body"), 1.0),
        },
        {
            "method": "ours",
            "subject": "a",
            **dict.fromkeys(("psnr", "ssim", "nmse", "psnr_body", "ssim_body", "nmse_body"), 3.0),
        },
        {
            "method": "ours",
            "subject": "b",
            **dict.fromkeys(("psnr", "ssim", "nmse", "psnr_body", "ssim_body", "nmse_body"), 5.0),
        },
    ]
    out = subject_summary(rows, ["ours"])
    assert out["ours"]["psnr"]["mean"] == pytest.approx((2.0 + 5.0) / 2)  # a subject's cases count once
    assert out["ours"]["psnr"]["n"] == 2
    assert 2.0 <= out["ours"]["psnr"]["ci_low"] <= out["ours"]["psnr"]["ci_high"] <= 5.0
