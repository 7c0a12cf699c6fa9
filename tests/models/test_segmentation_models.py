"""Every registered segmentation model: forward + backward on tiny 2D/3D inputs, the output contract."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from medsight.errors import ConfigError, RegistryError
from medsight.models import MODELS, build_model, dynunet_topology

torch.set_num_threads(1)

# name -> (3D input size, small kwargs); 2D uses the first two sizes. Sizes satisfy each model's
# divisibility rule and leave more than one voxel at the bottleneck (instance norm needs it).
TINY: dict[str, tuple[tuple[int, int, int], dict]] = {
    "dynunet": ((16, 16, 16), {"base_filters": 4, "max_depth": 2}),
    "unet": ((16, 16, 16), {"base_filters": 4, "depth": 2, "num_res_units": 1}),
    "attention_unet": ((16, 16, 16), {"base_filters": 4, "depth": 2}),
    "unetplusplus": ((32, 32, 32), {"base_filters": 4}),
    "segresnet": ((16, 16, 16), {"base_filters": 8, "blocks_down": (1, 1, 1, 1)}),
    "unetr": ((32, 32, 32), {"feature_size": 4, "hidden_size": 24, "mlp_dim": 48, "num_heads": 2}),
    "swinunetr": ((64, 32, 32), {"feature_size": 12, "depths": (1, 1, 1, 1)}),
}
DEEP_SUPERVISED = {"dynunet", "unetplusplus"}


def test_every_registered_segmentation_model_has_a_tiny_config() -> None:
    from medsight.models.classification import CLASSIFIERS

    assert set(MODELS.names()) - set(CLASSIFIERS) == set(TINY)


def _tiny(name: str, dims: int, deep_supervision: bool = False) -> tuple[torch.nn.Module, torch.Tensor]:
    size, kwargs = TINY[name]
    size = size[:dims]
    torch.manual_seed(0)
    model = build_model(
        name, spatial_dims=dims, in_channels=2, out_channels=3, patch_size=list(size),
        deep_supervision=deep_supervision, **kwargs,
    )  # fmt: skip
    return model, torch.randn(2, 2, *size)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", sorted(TINY))
def test_forward_backward_no_nan(name: str, dims: int) -> None:
    model, x = _tiny(name, dims)
    model.train()
    out = model(x)
    assert out.shape == (2, 3, *x.shape[2:])
    out.square().mean().backward()
    # UNETR's ViT blocks hold unused cross-attention norms (MONAI), so some grads may be None
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) > 0.5 * len(list(model.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", sorted(DEEP_SUPERVISED))
def test_deep_supervision_output_contract(name: str, dims: int) -> None:
    model, x = _tiny(name, dims, deep_supervision=True)
    model.train()
    out = model(x)
    assert out.ndim == dims + 3 and out.shape[0] == 2 and out.shape[2:] == (3, *x.shape[2:])
    assert out.shape[1] >= 2
    out.mean().backward()
    model.eval()
    with torch.no_grad():
        final = model(x)
    assert final.shape == (2, 3, *x.shape[2:])
    model.train()
    with torch.no_grad():
        torch.testing.assert_close(model(x)[:, 0], final)  # head 0 is the final output (no dropout/BN)


def test_dynunet_topology_matches_nnunet() -> None:
    iso = dynunet_topology([128, 128, 128], [1.0, 1.0, 1.0])
    assert iso.filters == [32, 64, 128, 256, 320, 320]
    assert iso.strides == [[1, 1, 1]] + [[2, 2, 2]] * 5 and iso.kernels == [[3, 3, 3]] * 6
    # anisotropic: thick slices are not pooled and get 1-kernels until the spacing catches up
    aniso = dynunet_topology([40, 224, 192], [3.0, 0.8, 0.8])
    assert aniso.kernels[0] == [1, 3, 3] and aniso.strides[1] == [1, 2, 2]
    assert aniso.num_pool_per_axis == [3, 5, 5] and aniso.divisor == [8, 32, 32]
    flat = dynunet_topology([512, 512], max_depth=6, base_filters=16)
    assert flat.filters == [16, 32, 64, 128, 256, 256, 256] and flat.num_pool_per_axis == [6, 6]
    assert dynunet_topology([100, 100]).patch_size == [112, 112]  # 4 halvings: 100 -> 7


def test_model_errors_are_clear() -> None:
    with pytest.raises(RegistryError, match="did you mean 'unet'"):
        build_model("unte", spatial_dims=2, in_channels=1, out_channels=2)
    with pytest.raises(ConfigError, match="patch_size is required"):
        build_model("dynunet", spatial_dims=3, in_channels=1, out_channels=2)
    with pytest.raises(ConfigError, match="multiple of 32"):
        build_model("swinunetr", spatial_dims=3, in_channels=1, out_channels=2, patch_size=[48, 48, 40])
    with pytest.raises(ConfigError, match="deep_supervision"):
        build_model("unet", spatial_dims=2, in_channels=1, out_channels=2, deep_supervision=True)
    with pytest.raises(ConfigError, match="try \\[32, 32\\]"):
        build_model("dynunet", spatial_dims=2, in_channels=1, out_channels=2, patch_size=[30, 32])
    with pytest.raises(ConfigError, match="segresnet"):
        build_model("segresnet", spatial_dims=2, in_channels=1, out_channels=2, no_such_option=1)
    with pytest.raises(ConfigError, match="spatial_dims"):
        build_model("unet", spatial_dims=4, in_channels=1, out_channels=2)


def test_import_does_not_load_monai() -> None:
    code = "import sys, medsight.models; print('monai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
