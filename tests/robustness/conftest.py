"""Session fixtures of the robustness tests (helpers in robustness_testutils)."""

from __future__ import annotations

import pytest
from robustness_testutils import Trained, class_images, seg_images, tiny_net, train_tiny
from torch import nn


@pytest.fixture(scope="session")
def classifier() -> Trained:
    return train_tiny(tiny_net(hidden=False), class_images, 160, 64, 60)


@pytest.fixture(scope="session")
def segmenter() -> Trained:
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1)
    )
    return train_tiny(net, seg_images, 64, 16, 80)
