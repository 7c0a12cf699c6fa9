"""Detectors of adversarial inputs: known answers, and AUROC on PGD examples of a tiny trained classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from robustness_testutils import per_sample_ce, synthetic_batch, trained_tiny_classifier
from scipy.spatial.distance import mahalanobis

from medsight.errors import ConfigError
from medsight.robustness.attacks import ATTACKS
from medsight.robustness.detectors import (
    DETECTORS,
    FeatureSqueezingDetector,
    LIDDetector,
    MahalanobisDetector,
    _mle_lid,
    default_layers,
    detection_auroc,
    evaluate_detectors,
    extract_features,
)


@pytest.fixture(scope="module")
def attacked():
    """The tiny classifier, 200 clean images to fit on, 100 other clean images and their PGD (8/255) twins."""
    model = trained_tiny_classifier()
    x, y = synthetic_batch(300, seed=7)
    x_fit, y_fit, x_clean, y_clean = x[:200], y[:200], x[200:], y[200:]
    x_adv = ATTACKS.get("pgd")(
        model, per_sample_ce, x_clean, y_clean, eps=8 / 255, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        assert (model(x_clean).argmax(1) == y_clean).float().mean() >= 0.9
        assert (model(x_adv).argmax(1) == y_clean).float().mean() <= 0.1  # the attack works
    return model, x_fit, y_fit, x_clean, x_adv


def test_feature_detectors_separate_pgd_examples_from_clean(attacked):
    model, x_fit, y_fit, x_clean, x_adv = attacked
    aurocs = evaluate_detectors(model, model, x_fit, y_fit, x_clean, x_adv)
    assert set(aurocs) == {
        "mahalanobis",
        "mahalanobis-supervised",
        "lid",
        "lid-supervised",
        "feature-squeezing",
    }
    assert aurocs["mahalanobis"] > 0.9 and aurocs["mahalanobis-supervised"] > 0.9
    assert aurocs["lid"] > 0.8
    assert all(0.0 <= v <= 1.0 for v in aurocs.values())


def test_detectors_do_not_flag_clean_images_with_tiny_noise(attacked):
    model, x_fit, y_fit, x_clean, _ = attacked
    noise = torch.randn(x_clean.shape, generator=torch.Generator().manual_seed(1))
    noisy = (x_clean + 0.002 * noise).clamp(0, 1)
    aurocs = evaluate_detectors(model, model, x_fit, y_fit, x_clean, noisy)
    assert all(0.35 <= v <= 0.65 for v in aurocs.values()), aurocs


def test_mahalanobis_distance_matches_scipy():
    g = np.random.default_rng(0)
    feats = np.r_[g.normal(0, 1, (40, 3)), g.normal(3, 1, (40, 3))]
    y = np.r_[np.zeros(40), np.ones(40)].astype(int)
    det = MahalanobisDetector.__new__(MahalanobisDetector)
    det.layers = ["f"]
    det.fit_features({"f": feats}, y)
    points = g.normal(1.5, 2, (5, 3))
    vi = det.precisions["f"]
    expected = [min(mahalanobis(p, det.means["f"][c], vi) for c in (0, 1)) for p in points]
    assert np.allclose(det.score_features({"f": points}), expected)
    assert np.allclose(det.means["f"], [feats[:40].mean(0), feats[40:].mean(0)])


def test_lid_known_answer():
    reference = torch.tensor([[1.0, 0], [2, 0], [3, 0], [4, 0], [0, 0]], dtype=torch.float64)
    query = torch.zeros(1, 2, dtype=torch.float64)  # equals the last reference row: that one is skipped
    r = np.array([1.0, 2, 3, 4])
    expected = -1 / np.mean(np.log(r / r[-1]))
    assert _mle_lid(query, reference, k=4)[0] == pytest.approx(expected)


def test_feature_squeezing_scores_known_answers():
    squeeze = FeatureSqueezingDetector(squeezers=["bit-depth:bits=1"])
    constant = squeeze.score(lambda u: torch.zeros(len(u), 3), torch.rand(4, 1, 8, 8))
    assert np.array_equal(constant, np.zeros(4))  # an output the squeezer cannot change: score 0
    u = torch.full((2, 1, 4, 4), 0.4)  # a segmenter-shaped output (B, 1, H, W): sigmoid of the image
    score = squeeze.score(lambda v: v * 10, u)
    p, q = torch.sigmoid(torch.tensor(4.0)), torch.sigmoid(torch.tensor(0.0))  # bits=1 rounds 0.4 to 0
    assert score == pytest.approx([float(2 * (p - q))] * 2)


def test_detection_auroc_known_answers():
    assert detection_auroc([0, 1], [2, 3]) == 1.0
    assert detection_auroc([2, 3], [0, 1]) == 0.0
    assert detection_auroc([1, 1], [1, 1]) == 0.5
    with pytest.raises(ConfigError, match="NaN"):
        detection_auroc([0, float("nan")], [1])
    with pytest.raises(ConfigError, match="needs clean and adversarial"):
        detection_auroc([], [1])


def test_layers_default_to_penultimate_and_named_layers_are_checked(attacked):
    model, x_fit, y_fit, *_ = attacked
    assert default_layers(model) == ["9:input"]  # the input of the last nn.Linear
    assert default_layers(model, multi=True) == ["3:input", "7:input", "9:input"]
    out, feats = extract_features(model, model, ["4", "9:input"], x_fit[:5])
    assert out.shape == (5, 2) and feats["4"].shape == (5, 16) and feats["9:input"].shape == (5, 16)
    with pytest.raises(ConfigError, match="detector layer 'nope'"):
        MahalanobisDetector(model, ["nope"]).fit(model, x_fit, y_fit)
    with pytest.raises(ConfigError, match="call fit"):
        LIDDetector(model).score(model, x_fit)
    assert set(DETECTORS) == {"mahalanobis", "lid", "feature-squeezing"}


def test_lid_supervised_fit_uses_adversarial_examples(attacked):
    model, x_fit, _, x_clean, x_adv = attacked
    lid = LIDDetector(model, k=20).fit(model, x_fit)
    unsupervised = lid.score(model, x_clean[:4])
    lid.fit_supervised(model, x_clean[:50], x_adv[:50])
    scores = lid.score(model, torch.cat([x_clean[50:], x_adv[50:]]))
    assert np.all((scores >= 0) & (scores <= 1)) and not np.allclose(unsupervised, scores[:4])
    assert detection_auroc(scores[:50], scores[50:]) > 0.7
