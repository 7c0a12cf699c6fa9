"""Randomised smoothing: known answers on a linear binary classifier, where the smoothed classifier and
its exact robust radius have closed forms (Cohen et al. 2019): g(u) = sign(w.u + b), radius |w.u+b| / |w|."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsight.errors import ConfigError
from medsight.planning.plan import ChannelNorm
from medsight.robustness import InputSpace
from medsight.robustness.smoothing import SmoothedClassifier, certified_accuracy, clopper_pearson_lower

SIGMA = 0.25


@pytest.fixture(scope="module")
def linear():
    """A linear binary classifier on 1x4x4 unit images; points at known signed distances to its boundary."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, generator=g)
    w_hat = w / w.norm()
    b = -float(w @ torch.full((16,), 0.5))  # the boundary passes through the grey image 0.5

    def forward(u: torch.Tensor) -> torch.Tensor:
        s = u.flatten(1) @ w + b
        return torch.stack([torch.zeros_like(s), s], 1)

    def at(distances: list[float]) -> torch.Tensor:
        return torch.stack([torch.full((16,), 0.5) + d * w_hat for d in distances]).view(-1, 1, 4, 4)

    return forward, at


def test_certified_radius_never_exceeds_the_true_distance_and_is_tight_far_from_the_boundary(linear):
    forward, at = linear
    distances = [-0.5, -0.25, 0.1, 0.25, 0.4, 0.5]
    labels, radii = SmoothedClassifier(forward, 2, SIGMA).certify(at(distances), n0=100, n=2000, alpha=0.001)
    truth = np.abs(distances)
    # the closed-form smoothed prediction: the side of the boundary
    assert labels.tolist() == [0, 0, 1, 1, 1, 1]
    assert np.all(radii <= truth) and np.all(radii > 0)
    assert np.all(radii[truth >= 0.25] >= 0.75 * truth[truth >= 0.25])  # a lower bound, but not a loose one


def test_abstains_on_the_boundary_and_predicts_the_side_away_from_it(linear):
    forward, at = linear
    smooth = SmoothedClassifier(forward, 2, SIGMA)
    labels, radii = smooth.certify(at([0.0, 0.001]), n0=50, n=500, alpha=0.001)
    assert labels.tolist() == [-1, -1] and radii.tolist() == [0.0, 0.0]
    assert smooth.predict(at([0.0, -0.3, 0.3]), n=200, alpha=0.001).tolist() == [-1, 0, 1]


def test_same_seed_same_certificate_and_noise_is_seeded(linear):
    forward, at = linear
    x = at([0.05, 0.2])
    a = SmoothedClassifier(forward, 2, SIGMA, seed=3).certify(x, n0=20, n=200)
    b = SmoothedClassifier(forward, 2, SIGMA, seed=3).certify(x, n0=20, n=200)
    c = SmoothedClassifier(forward, 2, SIGMA, seed=4).certify(x, n0=20, n=200)
    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])


def test_clopper_pearson_known_answers():
    # all successes: alpha^(1/n)
    assert clopper_pearson_lower(100, 100, 0.001) == pytest.approx(0.001 ** (1 / 100))
    assert clopper_pearson_lower(0, 100, 0.05) == 0.0
    assert clopper_pearson_lower(50, 100, 0.05) == pytest.approx(0.4134, abs=1e-3)  # tables: n=100, k=50


def test_certified_accuracy_known_answer():
    labels, radii, y = [0, 1, -1, 1], [0.5, 0.2, 0.0, 0.8], torch.tensor([0, 1, 1, 0])
    assert certified_accuracy(labels, radii, y, [0.0, 0.3, 0.6]).tolist() == [0.5, 0.25, 0.0]
    with pytest.raises(ConfigError, match="one shape"):
        certified_accuracy([0, 1], [0.1], [0, 1], [0.0])


def test_from_model_normalises_each_sample_with_its_own_state():
    """Scheme 'none' maps unit images back through each image's own range: sample i must use row i."""
    space = InputSpace([ChannelNorm(scheme="none")])
    x = torch.stack([torch.linspace(-300, -100, 16), torch.linspace(100, 300, 16)]).view(2, 1, 4, 4)
    u, state = space.to_unit(x)  # both unit images are the same ramp; only their states differ
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    with torch.no_grad():  # logit 0 = mean raw intensity, logit 1 = its negative
        model[1].weight.copy_(torch.tensor([[1.0] * 16, [-1.0] * 16]) / 16)
        model[1].bias.zero_()
    smooth = SmoothedClassifier.from_model(model, space, state, 2, sigma=1e-3)
    assert smooth.predict(u, n=50).tolist() == [1, 0]
    assert smooth.certify(u, n0=10, n=50)[0].tolist() == [1, 0]


def test_bad_arguments_are_config_errors(linear):
    forward, at = linear
    with pytest.raises(ConfigError, match="sigma"):
        SmoothedClassifier(forward, 2, 0.0)
    with pytest.raises(ConfigError, match="num_classes"):
        SmoothedClassifier(forward, 1, 0.1)
    with pytest.raises(ConfigError, match="alpha"):
        SmoothedClassifier(forward, 2, 0.1).predict(at([0.1]), alpha=1.5)
    with pytest.raises(ConfigError, match=r"logits of shape \(batch, 3\)"):
        SmoothedClassifier(forward, 3, 0.1).certify(at([0.1]), n0=5, n=5)
