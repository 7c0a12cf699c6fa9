"""The enhancement networks: the k-space cascade keeps the acquired samples (hard data consistency), its
matrix DFT is the data layer's fft2c, and every network keeps odd input sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsight.data.degradations import KSpaceUndersampling, fft2c, ifft2c
from medsight.models import build_model
from medsight.models.enhancement import fft2c_real, ifft2c_real


@pytest.mark.parametrize("shape", [(8, 8), (9, 12), (15, 6)])
def test_matrix_dft_is_fft2c(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    re, im = fft2c_real(torch.tensor(x.real).float(), torch.tensor(x.imag).float())
    np.testing.assert_allclose(re.numpy() + 1j * im.numpy(), fft2c(x), atol=1e-4)
    back_re, back_im = ifft2c_real(re, im)
    np.testing.assert_allclose(back_re.numpy() + 1j * back_im.numpy(), x, atol=1e-4)


def test_cascade_output_keeps_the_acquired_kspace_exactly_on_the_mask() -> None:
    rng = np.random.default_rng(1)
    clean = rng.random((1, 40, 36)).astype(np.float32)
    out = KSpaceUndersampling(4).apply(clean, rng)
    zf = ifft2c(out.kspace[0])
    x = np.stack([zf.real, zf.imag, out.mask.astype(np.float64)])[None].astype(np.float32)
    torch.manual_seed(0)
    net = build_model(
        "kspace_cascade", spatial_dims=2, in_channels=3, out_channels=3, base_filters=4, cascades=2
    )
    with torch.no_grad():
        for p in net.parameters():  # large random weights: the network changes the image a lot
            p.add_(torch.randn_like(p) * 0.5)
        y = net(torch.from_numpy(x))[0].numpy()
    k_out = fft2c(y[1] + 1j * y[2])
    mask = out.mask
    scale = np.abs(out.kspace[0]).max()
    np.testing.assert_allclose(k_out[mask], out.kspace[0][mask], atol=1e-4 * scale)
    assert np.abs(k_out[~mask] - out.kspace[0][~mask]).max() > 1e-2 * scale  # it did fill the rest
    np.testing.assert_allclose(y[0], np.abs(y[1] + 1j * y[2]), atol=1e-4)


@pytest.mark.parametrize("name", ["residual_unet", "dncnn", "redcnn"])
def test_image_networks_keep_odd_sizes(name: str) -> None:
    from medsight.models import model_info

    net = build_model(name, spatial_dims=2, in_channels=1, out_channels=1, **model_info(name).tiny).eval()
    with torch.no_grad():
        y = net(torch.randn(2, 1, 21, 34))
    assert y.shape == (2, 1, 21, 34) and torch.isfinite(y).all()


def test_the_residual_unet_enhances_a_region_the_same_whatever_lies_far_from_it() -> None:
    """Trained on crops, run on whole slices: a pixel's output must not depend on the extent around it
    (an instance norm's statistics do; that way the residual U-Net made a brain slice brighter by 7% of
    its 99th percentile)."""
    torch.manual_seed(0)
    net = build_model("residual_unet", spatial_dims=2, in_channels=1, out_channels=1, base_filters=4)
    with torch.no_grad():
        for p in net.parameters():  # random weights everywhere: the network changes the image
            p.add_(torch.randn_like(p) * 0.3)
    net.eval()
    x = torch.rand(1, 1, 320, 320)
    far = x.clone()
    far[..., 200:, 200:] = 0.0  # the corner far from the region scored: air instead of tissue
    with torch.no_grad():
        near, changed = net(x)[..., :32, :32], net(far)[..., :32, :32]
    assert (near - x[..., :32, :32]).abs().max() > 1e-2  # the network is not the identity
    torch.testing.assert_close(changed, near)
