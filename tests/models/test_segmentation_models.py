"""Segmentation models: nnU-Net's DynUNet topology rule and clear errors.

Forward + backward of every registered model: test_model_contracts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from medsight.errors import ConfigError, RegistryError
from medsight.models import build_model, dynunet_topology


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
