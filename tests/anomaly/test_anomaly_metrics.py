"""Known answers for the anomaly metrics: scikit-learn for AUROC / AP, brute force over thresholds for
best Dice, hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from medsight.metrics.anomaly import (
    average_precision,
    best_dice,
    image_auroc,
    image_summary,
    pixel_metrics,
    youden_threshold,
)


@pytest.mark.parametrize("seed", range(4))
def test_auroc_and_ap_match_scikit_learn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(size=200) + y, 1)  # rounded: many ties
    assert image_auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_one_class_gives_nan_and_hand_computed_cases() -> None:
    assert math.isnan(image_auroc(np.zeros(4), np.arange(4.0)))
    assert math.isnan(average_precision(np.zeros(4), np.arange(4.0)))
    assert image_auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    # ranked 1 (pos), 0.5 (neg), 0.2 (pos): precision 1 at recall 1/2, 2/3 at recall 1
    assert average_precision(np.array([1, 0, 1]), np.array([1.0, 0.5, 0.2])) == pytest.approx(
        0.5 + 0.5 * 2 / 3
    )


def test_best_dice_equals_brute_force_over_thresholds() -> None:
    rng = np.random.default_rng(0)
    maps = np.round(rng.random((3, 8, 8)), 2)
    masks = rng.random((3, 8, 8)) < 0.2
    brute = max(
        2 * np.logical_and(maps >= t, masks).sum() / ((maps >= t).sum() + masks.sum())
        for t in np.unique(maps)
    )
    assert best_dice(maps, masks) == pytest.approx(brute, abs=1e-12)
    assert best_dice(np.array([0.9, 0.8, 0.1, 0.0]), np.array([1, 1, 0, 0])) == 1.0
    assert math.isnan(best_dice(np.ones(4), np.zeros(4)))


def test_pixel_metrics_and_youden_threshold() -> None:
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2, :2] = True
    maps = masks * 1.0 + 0.1
    out = pixel_metrics(maps, masks)
    assert out == {"pixel_auroc": 1.0, "pixel_ap": 1.0, "best_dice": 1.0}
    y, s = np.array([0, 0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.6, 0.7])
    t = youden_threshold(y, s)
    assert 0.3 <= t < 0.6 and ((s > t) == (y == 1)).all()


def test_image_summary_has_bootstrap_cis_around_the_point_estimate() -> None:
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(60), np.ones(40)].astype(int)
    s = rng.normal(size=100) + 1.5 * y
    summary = image_summary(y, s, threshold=0.75, n_boot=300)["all"]
    auc = summary["image_auroc"]
    assert auc["mean"] == pytest.approx(roc_auc_score(y, s))
    assert auc["ci_low"] < auc["mean"] < auc["ci_high"] and auc["ci_high"] - auc["ci_low"] < 0.3
    assert summary["sensitivity"]["mean"] == pytest.approx(float((s[y == 1] > 0.75).mean()))
    assert summary["specificity"]["mean"] == pytest.approx(float((s[y == 0] <= 0.75).mean()))


def test_pixel_summary_cis_and_normal_cases_count_as_all_normal_pixels() -> None:
    from tests.anomaly.anomaly_testutils import tiny_data

    from medsight.tasks.anomaly.pipeline import _pixel_metrics
    from medsight.tasks.anomaly.planning import plan_anomaly

    data = tiny_data(n_normal=4, n_anomalous=4)
    plan = plan_anomaly(data)
    cases = data.splits["test"]
    masks = np.stack([c.extra["mask"] if "mask" in c.extra else np.zeros((32, 32)) for c in cases])
    perfect = _pixel_metrics(cases, masks[:, None] + 0.01, plan)
    assert {k: v["mean"] for k, v in perfect.items()} == {
        "pixel_auroc": 1.0,
        "pixel_ap": 1.0,
        "best_dice": 1.0,
    }
    noisy = masks[:, None] + np.random.default_rng(0).random((8, 1, 32, 32))
    summary = _pixel_metrics(cases, noisy, plan)
    assert summary["best_dice"]["ci_low"] <= summary["best_dice"]["mean"] <= summary["best_dice"]["ci_high"]
    assert summary["pixel_auroc"]["n"] == 8
    cases[-1].extra.pop("mask")  # an anomalous case without a mask is left out
    assert _pixel_metrics(cases, noisy, plan)["pixel_auroc"]["n"] == 7
