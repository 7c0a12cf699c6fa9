"""The torch-free pre/post-processing: slice fitting, tiling, the mask of raw k-space, input checks."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.errors import DataError
from medsight.tasks.enhance.planning import EnhancePlan
from medsight.tasks.enhance.slices import enhance_slice, fit_plane, infer_mask, select_slices, tiled


def _plan(network: str = "residual_unet", **kw: object) -> EnhancePlan:
    base = dict(dim=2, in_channels=1, class_names=["image"], normalization=[{"scheme": "none"}],
                network=network, batch_size=2, slice_size=[16, 16], degradation="gaussian:0.05",
                degradation_settings={"kind": "gaussian"})  # fmt: skip
    return EnhancePlan.model_validate({**base, **kw})


def test_fit_plane_centres_crops_and_pads() -> None:
    x = np.arange(30.0).reshape(5, 6)
    out = fit_plane(x, (7, 4))
    assert out.shape == (7, 4)
    np.testing.assert_array_equal(out[1:6], x[:, 1:5])
    assert (out[0] == x.min()).all()


def test_tiling_an_identity_network_gives_the_input_back() -> None:
    x = np.random.default_rng(0).random((1, 37, 23)).astype(np.float32)
    np.testing.assert_allclose(tiled(lambda b: b * 1.0, x, [16, 16], 1), x, rtol=1e-6)


def test_enhance_slice_scales_back() -> None:
    img = np.random.default_rng(1).random((20, 18)).astype(np.float32) * 500
    out = enhance_slice(lambda b: b.copy(), _plan(), img)
    np.testing.assert_allclose(out, img, rtol=1e-5)


def test_mask_of_raw_undersampled_kspace() -> None:
    k = np.random.default_rng(2).normal(size=(2, 8, 10)) + 0j
    cols = np.zeros(10, bool)
    cols[[1, 4, 5, 8]] = True
    k[..., ~cols] = 0
    np.testing.assert_array_equal(infer_mask(k), np.broadcast_to(cols, (8, 10)))


def test_a_kspace_network_refuses_images() -> None:
    plan = _plan("kspace_cascade", in_channels=3, class_names=["magnitude", "real", "imaginary"],
                 normalization=[{"scheme": "none"}] * 3)  # fmt: skip
    with pytest.raises(DataError, match=r"kspace_cascade reconstructs k-space: give raw k-space"):
        enhance_slice(lambda b: b, plan, np.ones((16, 16), np.float32))


def test_slices_with_body_are_selected() -> None:
    stack = np.zeros((6, 10, 10), np.float32)
    stack[2:5, 2:8, 2:8] = 1.0
    assert select_slices(stack, 8, 0.15) == [2, 3, 4]
    assert select_slices(stack, 2, 0.15) == [2, 4]
