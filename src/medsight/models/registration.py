"""Registration networks: a VoxelMorph-style U-Net (MONAI's ``BasicUNet``, LeakyReLU) that takes the
moving and fixed images as channels and returns a displacement (or stationary velocity) field, one
channel per spatial axis, in voxels along the array axes.

The flow head starts at (almost) zero, as in VoxelMorph, so an untrained network is the identity.

Example:
    >>> net = build_voxelmorph_unet(spatial_dims=2, in_channels=2, out_channels=2, base_filters=4)
    >>> net(torch.zeros(1, 2, 16, 16)).shape
    torch.Size([1, 2, 16, 16])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medsight.models import register_model
from medsight.models.info import ModelInfo

MULTIPLE = 16  # four 2x down-samplings


class VoxelMorphUNet(nn.Module):
    """MONAI BasicUNet (features base x (1, 2, 2, 2, 2, 1), LeakyReLU 0.2) with a near-zero flow head."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, base_filters: int = 16
    ) -> None:
        super().__init__()
        from monai.networks.nets import BasicUNet

        w = int(base_filters)
        self.net = BasicUNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            features=(w, 2 * w, 2 * w, 2 * w, 2 * w, w),
            act=("LeakyReLU", {"negative_slope": 0.2, "inplace": True}),
            norm=("instance", {"affine": True}),
        )
        head = self.net.final_conv
        nn.init.normal_(head.weight, 0.0, 1e-5)
        if head.bias is not None:
            nn.init.zeros_(head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_model(
    "voxelmorph_unet",
    ModelInfo(family="registration", output="logit_map", multiple=MULTIPLE, min_size=2 * MULTIPLE,
              width_option="base_filters", tiny={"base_filters": 4}),
)  # fmt: skip
def build_voxelmorph_unet(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    base_filters: int = 16,
    patch_size: Any = None,
    **_: Any,
) -> nn.Module:
    """The VoxelMorph-style U-Net (input sides: multiples of 16)."""
    from medsight.errors import ConfigError

    if patch_size is not None and any(int(p) % MULTIPLE for p in patch_size):
        raise ConfigError(
            f"model 'voxelmorph_unet': every patch_size side must be a multiple of {MULTIPLE}, "
            f"got {patch_size}"
        )
    return VoxelMorphUNet(spatial_dims, in_channels, out_channels, base_filters)
