"""The network's own view in the out-of-distribution flag: a Mahalanobis distance on its features, calibrated
on held-out images (or leave-one-out), saved with the run, combined with the image statistics' flag."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from medsight.deploy.feature_profile import FeatureProfile, feature_profile, image_features
from medsight.deploy.ood import OODResult
from medsight.io import Image
from medsight.robustness.detectors import default_layers
from medsight.tasks.segment.attack import patch_tiles


def textured(n: int, seed: int, stripes: bool = True) -> list[Image]:
    """Grey 16x16 images of one texture (vertical stripes, or noise of the same mean and spread)."""
    rng = np.random.default_rng(seed)
    columns = np.tile(np.arange(16) % 4 < 2, (16, 1)).astype(np.float32)
    out = []
    for _ in range(n):
        base = columns if stripes else (rng.random((16, 16)) < 0.5).astype(np.float32)
        out.append(Image.from_array((base + rng.normal(0, 0.1, (16, 16)))[None].astype(np.float32)))
    return out


@pytest.fixture(scope="module")
def view() -> SimpleNamespace:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    ).eval()
    return SimpleNamespace(model=model, network_input=lambda im: torch.from_numpy(im.array)[None])


def fitted(view: SimpleNamespace, held_out: bool) -> FeatureProfile:
    profile = feature_profile(view, textured(60, seed=0), textured(100, seed=1) if held_out else None)
    assert profile is not None and profile.layers == default_layers(view.model, multi=True)
    return profile


def scores(view: SimpleNamespace, profile: FeatureProfile, images: list[Image]) -> np.ndarray:
    return profile.detector(view.model).score_features(image_features(view, profile.layers, images))


@pytest.mark.parametrize("held_out", [True, False], ids=["validation", "leave-one-out"])
def test_a_texture_the_network_never_saw_scores_above_the_threshold(
    view: SimpleNamespace, held_out: bool
) -> None:
    profile = fitted(view, held_out)
    similar = scores(view, profile, textured(200, seed=2))
    unseen = scores(view, profile, textured(50, seed=3, stripes=False))
    assert np.mean(similar > profile.threshold) <= 0.05  # calibrated at 1%: a few percent by chance
    assert np.mean(unseen > profile.threshold) >= 0.9
    assert profile.calibration.startswith("validation" if held_out else "training, leave-one-out")


def test_feature_profile_round_trip(view: SimpleNamespace, tmp_path: Path) -> None:
    profile = fitted(view, held_out=True)
    profile.save(tmp_path)
    loaded = FeatureProfile.load(tmp_path)
    assert loaded is not None and loaded.layers == profile.layers and loaded.threshold == profile.threshold
    images = textured(5, seed=4, stripes=False)
    np.testing.assert_allclose(scores(view, loaded, images), scores(view, profile, images))
    assert FeatureProfile.load(tmp_path / "nowhere") is None


def test_features_alone_flag_an_input_and_say_so() -> None:
    passed = OODResult(
        score=1.2, flagged=False, reason="intensity median of channel 0 1.05x the training median"
    )
    flagged = passed.with_features(6.0, threshold=2.0)
    assert flagged.flagged and flagged.feature_score == 6.0
    assert flagged.reason.startswith("the network's features 3.0x the flag threshold")
    assert passed.with_features(1.0, threshold=2.0) == OODResult(1.2, False, passed.reason, 1.0)


def test_patch_tiles_cover_a_larger_image_and_pad_a_smaller_one() -> None:
    image = np.arange(2 * 10 * 7, dtype=np.float32).reshape(2, 10, 7)
    tiles = patch_tiles(image, [4, 8], per_axis=2)
    assert tiles.shape == (2, 2, 4, 8)  # two starts along the long axis, one (padded) along the short
    np.testing.assert_array_equal(tiles[0, :, :, 7], 0)  # the padding
    np.testing.assert_array_equal(tiles[1, :, :, :7], image[:, 6:10, :])
    central = patch_tiles(image, [4, 8], per_axis=1)
    np.testing.assert_array_equal(central[0, :, :, :7], image[:, 3:7, :])
