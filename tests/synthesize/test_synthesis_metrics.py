"""Known-answer tests of the synthesis metrics (FID's formula, KID's unbiased MMD, improved precision /
recall, the memorised share, masked PSNR / SSIM / MAE)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medsight.metrics.synthesis import (
    frechet_distance,
    frechet_from_stats,
    kernel_distance,
    memorisation,
    mmd2_unbiased,
    precision_recall,
    translation_metrics,
)


def test_frechet_of_diagonal_gaussians_matches_the_closed_form() -> None:
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([3.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))  # 13 + 6 = 19
    assert frechet_from_stats(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(19.0)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_a_shift() -> None:
    x = np.random.default_rng(0).normal(size=(500, 4))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x, x + 2.0) == pytest.approx(16.0, rel=1e-6)  # ||shift||^2, same covariance


def test_mmd_is_the_unbiased_estimate_computed_by_hand() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(5, 3)) + 0.5  # unequal sizes

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (a @ b / 3 + 1) ** 3

    sxx = sum(k(x[i], x[j]) for i in range(6) for j in range(6) if i != j) / 30
    syy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
    sxy = sum(k(a, b) for a in x for b in y) / 30
    assert mmd2_unbiased(x, y) == pytest.approx(sxx + syy - 2 * sxy, rel=1e-10)
    kid, sd = kernel_distance(x[:5], y, subsets=3, subset_size=100)
    assert kid == pytest.approx(mmd2_unbiased(x[:5], y), rel=1e-10) and sd < 1e-12  # subsets: whole sets


def test_precision_and_recall_on_points_of_a_line() -> None:
    real = np.array([[0.0], [1.0], [2.0], [3.0]])  # k=1 radius 1 around each
    fake = np.array([[0.5], [10.0]])  # one inside the real manifold, one far out; radius 9.5 each
    precision, recall = precision_recall(real, fake, k=1)
    assert precision == pytest.approx(0.5)
    assert recall == pytest.approx(1.0)  # every real point lies within 9.5 of a fake one


def test_memorised_share_flags_a_copy_and_not_a_distant_picture() -> None:
    train = np.array([[0.0], [10.0], [20.0]])  # nearest-neighbour distance 10 each
    samples = np.array([[0.1], [40.0]])
    share, idx, flags = memorisation(samples, train)
    assert share == pytest.approx(0.5) and list(idx) == [0, 2] and list(flags) == [True, False]


def test_translation_metrics_inside_a_mask() -> None:
    ref = np.random.default_rng(2).uniform(0.2, 0.8, size=(32, 32))
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    same = translation_metrics(ref, ref, mask)
    assert math.isinf(same["psnr"]) and same["ssim"] == pytest.approx(1.0) and same["mae"] == 0.0
    shifted = ref.copy()
    shifted[mask] += 0.1
    shifted[~mask] = 0.0  # outside the mask does not count
    out = translation_metrics(shifted, ref, mask)
    assert out["mae"] == pytest.approx(0.1) and out["psnr"] == pytest.approx(20.0, abs=1e-6)
