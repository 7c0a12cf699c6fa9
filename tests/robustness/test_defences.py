"""Input-transformation defences: known answers, 2D and 3D, BPDA gradients, defended forwards under attack."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from robustness_testutils import per_sample_ce, synthetic_batch, trained_tiny_classifier
from scipy import ndimage

from medsight.errors import ConfigError, RegistryError
from medsight.robustness.attacks import ATTACKS
from medsight.robustness.defences import (
    INPUT_DEFENCES,
    apply_defence,
    bit_depth_reduction,
    defended_forward,
    gaussian_smoothing,
    median_smoothing,
    parse_defence,
    tv_denoising,
)


@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 2, 5, 6, 7)])
@pytest.mark.parametrize("kernel", [3, 5])
def test_median_matches_scipy_in_2d_and_3d(shape, kernel):
    u = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    size = (1, 1) + (kernel,) * (len(shape) - 2)
    expected = ndimage.median_filter(u.numpy(), size=size, mode="nearest")
    assert np.allclose(median_smoothing(u, kernel).numpy(), expected)


def test_median_removes_an_outlier_and_kernel_one_is_identity():
    u = torch.full((1, 1, 5, 5), 0.2)
    u[0, 0, 2, 2] = 1.0
    assert torch.allclose(median_smoothing(u, 3), torch.full_like(u, 0.2))
    assert median_smoothing(u, 1) is u
    with pytest.raises(ConfigError, match="odd integer"):
        median_smoothing(u, 2)


def test_bit_depth_known_values():
    u = torch.tensor([0.0, 0.1, 0.4, 0.6, 0.9, 1.0]).view(1, 1, 2, 3)
    assert bit_depth_reduction(u, 1).flatten().tolist() == [0, 0, 0, 1, 1, 1]
    expected = torch.tensor([0, 0, 1, 2, 3, 3]) / 3  # 2 bits: levels 0, 1/3, 2/3, 1
    assert torch.allclose(bit_depth_reduction(u, 2).flatten(), expected)
    assert len(bit_depth_reduction(torch.rand(1, 1, 32, 32), 3).unique()) <= 8
    with pytest.raises(ConfigError, match="bits"):
        bit_depth_reduction(u, 0)


@pytest.mark.parametrize("shape", [(2, 1, 24, 24), (1, 1, 12, 12, 12)])
def test_tv_and_gaussian_denoise_a_noisy_flat_image_in_2d_and_3d(shape):
    g = torch.Generator().manual_seed(0)
    noisy = (0.5 + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1)
    for out in (tv_denoising(noisy, 0.1), gaussian_smoothing(noisy, 1.0)):
        assert out.shape == noisy.shape
        assert (out - 0.5).std() < 0.5 * (noisy - 0.5).std()
        assert abs(float(out.mean()) - 0.5) < 0.02  # smoothing, not a shift
    flat = torch.full(shape, 0.3)
    assert torch.allclose(gaussian_smoothing(flat, 2.0), flat, atol=1e-5)


def test_bpda_gradient_is_the_identity_for_non_differentiable_defences():
    u = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
    w = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    for name in ("bit-depth", "tv-denoise"):
        assert not INPUT_DEFENCES.get(name).differentiable
        out = defended_forward(lambda v: (v * w).flatten(1).sum(1), name)(u)
        # forward: the defence
        assert torch.allclose(out, (apply_defence(u.detach(), name) * w).flatten(1).sum(1))
        (grad,) = torch.autograd.grad(out.sum(), u)
        assert torch.allclose(grad, w)  # backward: the identity
    (raw,) = torch.autograd.grad((bit_depth_reduction(u, 5) * w).sum(), u)
    assert torch.count_nonzero(raw) == 0  # why BPDA: rounding has no gradient


def test_differentiable_defences_are_differentiated_exactly():
    u = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(3), requires_grad=True)
    out = defended_forward(lambda v: v.sum(), "median:kernel=3")(u)
    (grad,) = torch.autograd.grad(out, u)
    (expected,) = torch.autograd.grad(median_smoothing(u, 3).sum(), u)
    assert torch.equal(grad, expected) and not torch.allclose(grad, torch.ones_like(grad))


def test_parse_defence_specs():
    assert parse_defence("median") == ("median", {"kernel": 3})
    assert parse_defence("Bit-Depth:bits=4") == ("bit-depth", {"bits": 4})
    assert parse_defence(("tv-denoise", {"weight": 0.2})) == ("tv-denoise", {"weight": 0.2})
    with pytest.raises(RegistryError, match="did you mean 'median'"):
        parse_defence("medain")
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['sigma'\]; known: \['kernel'\]"):
        parse_defence("median:sigma=1")
    with pytest.raises(ConfigError, match="expected a number"):
        parse_defence("median:kernel=three")
    with pytest.raises(ConfigError, match=r"\(B, C, H, W\)"):
        median_smoothing(torch.rand(4, 4))


def test_adaptive_bpda_attack_breaks_bit_depth_that_masks_gradients():
    """Through the defence, PGD with BPDA defeats the defended model; without BPDA (rounding's zero gradient)
    the same attack is powerless -- gradient masking, not robustness."""
    model = trained_tiny_classifier()
    x, y = synthetic_batch(64, seed=7)
    defended = defended_forward(model, "bit-depth:bits=6")

    def masked(u: torch.Tensor) -> torch.Tensor:
        return model(bit_depth_reduction(u, 6))

    def accuracy(forward, u):
        with torch.no_grad():
            return float((forward(u).argmax(1) == y).float().mean())

    pgd = ATTACKS.get("pgd")
    adaptive = pgd(defended, per_sample_ce, x, y, eps=8 / 255, generator=torch.Generator().manual_seed(0))
    blind = pgd(masked, per_sample_ce, x, y, eps=8 / 255, random_start=False)
    assert accuracy(defended, x) >= 0.9
    assert accuracy(defended, adaptive) <= 0.1
    assert accuracy(defended, blind) == accuracy(defended, x)
    assert torch.equal(blind, x)  # no gradient: the attack never moved
