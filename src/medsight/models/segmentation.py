"""Segmentation networks from MONAI, registered by name, plus nnU-Net's DynUNet topology rule.

Builders import MONAI lazily. All of them take the keyword arguments of
:func:`medsight.models.build_model` and return a plain ``nn.Module`` honouring the output
contract described in :mod:`medsight.models`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medsight.errors import ConfigError
from medsight.models import register_model
from medsight.models.info import ModelInfo

FILTER_CAP = {2: 512, 3: 320}  # nnU-Net's maximum feature count per stage


@dataclass(frozen=True)
class DynUNetTopology:
    """Layout of a DynUNet chosen from a patch size and a voxel spacing (nnU-Net's rule).

    Attributes:
        kernels: convolution kernel per stage (input stage first, bottleneck last).
        strides: down-sampling stride per stage (the first is all ones).
        filters: feature count per stage.
        num_pool_per_axis: how many times each axis is halved.
        divisor: the patch size must be a multiple of this, per axis.
        patch_size: the requested patch size rounded up to ``divisor``.
    """

    kernels: list[list[int]]
    strides: list[list[int]]
    filters: list[int]
    num_pool_per_axis: list[int]
    divisor: list[int]
    patch_size: list[int]


def dynunet_topology(
    patch_size: Sequence[int],
    spacing: Sequence[float] | None = None,
    max_depth: int = 5,
    min_feature_size: int = 4,
    *,
    base_filters: int = 32,
    max_filters: int | None = None,
) -> DynUNetTopology:
    """Kernels, strides and filters for a DynUNet, derived like nnU-Net's ``get_pool_and_conv_props``.

    At each stage, the axes that may still be halved are those whose current size is at least
    ``2 * min_feature_size``, whose current spacing is within a factor 2 of the finest such
    spacing, and that were halved fewer than ``max_depth`` times (a lone axis is halved only when
    at least ``3 * min_feature_size`` long). A kernel becomes 3 along an axis once that axis's
    spacing is within a factor 2 of the finest; the bottleneck kernel is always 3.

    Args:
        patch_size: training patch size, one entry per spatial axis.
        spacing: voxel spacing per axis (default isotropic).
        max_depth: most halvings per axis.
        min_feature_size: smallest edge of the coarsest feature map.
        base_filters: features of the first stage (nnU-Net: 32), doubled per stage.
        max_filters: cap on features (default 320 in 3D, 512 in 2D, scaled by ``base_filters / 32``).

    Example:
        >>> t = dynunet_topology([128, 128, 128], [1.0, 1.0, 1.0])
        >>> t.filters
        [32, 64, 128, 256, 320, 320]
    """
    dims = len(patch_size)
    if dims not in (2, 3) or min(patch_size) < 1:
        raise ConfigError(
            f"dynunet_topology: patch_size must hold 2 or 3 positive sizes, got {list(patch_size)}"
        )
    spacing = [1.0] * dims if spacing is None else [float(s) for s in spacing]
    if len(spacing) != dims or min(spacing) <= 0:
        raise ConfigError(f"dynunet_topology: spacing must hold {dims} positive values, got {spacing}")
    if max_depth < 1 or min_feature_size < 1 or base_filters < 1:
        raise ConfigError(
            "dynunet_topology: max_depth, min_feature_size and base_filters must be >= 1, got "
            f"{max_depth}, {min_feature_size}, {base_filters}"
        )
    cur_spacing, cur_size = list(spacing), [float(p) for p in patch_size]
    kernel, kernels, strides, pools = [1] * dims, [], [[1] * dims], [0] * dims
    while True:
        axes = _poolable_axes(cur_size, cur_spacing, pools, max_depth, min_feature_size)
        if not axes:
            break
        for d in range(dims):
            if cur_spacing[d] / min(cur_spacing) < 2:
                kernel[d] = 3
        stride = [1] * dims
        for d in axes:
            stride[d], pools[d] = 2, pools[d] + 1
            cur_spacing[d] *= 2
            cur_size[d] = math.ceil(cur_size[d] / 2)
        strides.append(stride)
        kernels.append(list(kernel))
    kernels.append([3] * dims)
    cap = max_filters or max(1, FILTER_CAP[dims] * base_filters // 32)
    filters = [min(base_filters * 2**i, cap) for i in range(len(strides))]
    divisor = [2**p for p in pools]
    padded = [math.ceil(p / d) * d for p, d in zip(patch_size, divisor, strict=True)]
    return DynUNetTopology(kernels, strides, filters, pools, divisor, padded)


def _poolable_axes(
    size: list[float], spacing: list[float], pools: list[int], max_depth: int, min_feature_size: int
) -> list[int]:
    axes = [i for i in range(len(size)) if size[i] >= 2 * min_feature_size]
    if not axes:
        return []
    finest = min(spacing[i] for i in axes)
    axes = [i for i in axes if spacing[i] / finest < 2 and pools[i] < max_depth]
    if len(axes) == 1 and size[axes[0]] < 3 * min_feature_size:
        return []
    return axes


def _construct(name: str, cls: Callable[..., nn.Module], **kwargs: Any) -> nn.Module:
    """Instantiate a MONAI network, turning its argument errors into ConfigError."""
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(f"model {name!r}: {exc}") from exc


def _no_deep_supervision(name: str, deep_supervision: bool) -> None:
    if deep_supervision:
        raise ConfigError(
            f"model {name!r}: deep_supervision=True is not supported; use 'dynunet' or 'unetplusplus'"
        )


def _require_patch(name: str, patch_size: list[int] | None, multiple: int) -> list[int]:
    if patch_size is None:
        raise ConfigError(f"model {name!r}: patch_size is required (its layout depends on the input size)")
    bad = [p for p in patch_size if p % multiple]
    if bad:
        fixed = [math.ceil(p / multiple) * multiple for p in patch_size]
        raise ConfigError(
            f"model {name!r}: patch_size must be a multiple of {multiple} per axis, got {patch_size} "
            f"(try {fixed})"
        )
    return patch_size


def _stage_channels(base_filters: int, depth: int) -> tuple[int, ...]:
    if base_filters < 1 or depth < 1:
        raise ConfigError(f"base_filters and depth must be >= 1, got {base_filters} and {depth}")
    return tuple(base_filters * 2**i for i in range(depth + 1))


@register_model(
    "dynunet",
    ModelInfo(
        family="segmentation",
        output="deep_supervision",
        needs_patch_size=True,
        min_size=16,
        width_option="base_filters",
        tiny={"base_filters": 4, "max_depth": 2},
    ),
)
def build_dynunet(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    spacing: Sequence[float] | None = None,
    max_depth: int = 5,
    min_feature_size: int = 4,
    base_filters: int = 32,
    max_filters: int | None = None,
    deep_supr_num: int = 2,
    **kwargs: Any,
) -> nn.Module:
    """nnU-Net's network: MONAI DynUNet with kernels/strides/filters from :func:`dynunet_topology`.

    ``deep_supr_num`` is clipped to what the depth allows; extra kwargs go to ``DynUNet``
    (e.g. ``res_block=True``, ``norm_name``).
    """
    from monai.networks.nets import DynUNet

    if patch_size is None:
        raise ConfigError("model 'dynunet': patch_size is required (kernels and strides derive from it)")
    topo = dynunet_topology(
        patch_size, spacing, max_depth, min_feature_size, base_filters=base_filters, max_filters=max_filters
    )
    if topo.patch_size != list(patch_size):
        raise ConfigError(
            f"model 'dynunet': patch_size must be a multiple of {topo.divisor} per axis for this topology, "
            f"got {list(patch_size)} (try {topo.patch_size})"
        )
    n_up = len(topo.strides) - 1
    if n_up < 1:
        raise ConfigError(f"model 'dynunet': patch_size {list(patch_size)} is too small to down-sample")
    if deep_supervision and n_up < 2:
        raise ConfigError(f"model 'dynunet': deep supervision needs at least 2 down-samplings, got {n_up}")
    return _construct(
        "dynunet",
        DynUNet,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=topo.kernels,
        strides=topo.strides,
        upsample_kernel_size=topo.strides[1:],
        filters=topo.filters,
        deep_supervision=deep_supervision,
        deep_supr_num=max(1, min(deep_supr_num, n_up - 1)),
        **kwargs,
    )


@register_model(
    "unet",
    ModelInfo(
        family="segmentation",
        output="logit_map",
        multiple=16,
        min_size=32,
        width_option="base_filters",
        tiny={"base_filters": 4, "depth": 2, "num_res_units": 1},
    ),
)
def build_unet(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    base_filters: int = 16,
    depth: int = 4,
    num_res_units: int = 2,
    **kwargs: Any,
) -> nn.Module:
    """MONAI UNet with residual units; input sizes must be multiples of ``2**depth``."""
    from monai.networks.nets import UNet

    _no_deep_supervision("unet", deep_supervision)
    if patch_size is not None:
        _require_patch("unet", patch_size, 2**depth)
    return _construct(
        "unet",
        UNet,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=_stage_channels(base_filters, depth),
        strides=(2,) * depth,
        num_res_units=num_res_units,
        **kwargs,
    )


@register_model(
    "attention_unet",
    ModelInfo(
        family="segmentation",
        output="logit_map",
        multiple=16,
        min_size=16,
        width_option="base_filters",
        tiny={"base_filters": 4, "depth": 2},
    ),
)
def build_attention_unet(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    base_filters: int = 16,
    depth: int = 4,
    **kwargs: Any,
) -> nn.Module:
    """MONAI AttentionUnet (Oktay et al.); input sizes must be multiples of ``2**depth``."""
    from monai.networks.nets import AttentionUnet

    _no_deep_supervision("attention_unet", deep_supervision)
    if patch_size is not None:
        _require_patch("attention_unet", patch_size, 2**depth)
    return _construct(
        "attention_unet",
        AttentionUnet,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=_stage_channels(base_filters, depth),
        strides=(2,) * depth,
        **kwargs,
    )


class HeadsAsTensor(nn.Module):
    """Wrap a network returning a list of full-resolution heads (final head last) into the contract.

    Eval mode, or no deep supervision: the final head ``(B, C, *spatial)``. Train mode with deep
    supervision: ``(B, N_heads, C, *spatial)`` with the final head first.
    """

    def __init__(self, net: nn.Module, deep_supervision: bool) -> None:
        super().__init__()
        self.net = net
        self.deep_supervision = deep_supervision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = self.net(x)
        if self.training and self.deep_supervision:
            return torch.stack(list(reversed(heads)), dim=1)
        return heads[-1]


@register_model(
    "unetplusplus",
    ModelInfo(
        family="segmentation",
        output="deep_supervision",
        multiple=16,
        min_size=32,
        width_option="base_filters",
        tiny={"base_filters": 4},
    ),
)
def build_unetplusplus(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    base_filters: int = 32,
    **kwargs: Any,
) -> nn.Module:
    """MONAI BasicUNetPlusPlus (Zhou et al.), wrapped so its list output follows the contract."""
    from monai.networks.nets import BasicUNetPlusPlus

    if patch_size is not None:
        _require_patch("unetplusplus", patch_size, 16)
    b = base_filters
    net = _construct(
        "unetplusplus",
        BasicUNetPlusPlus,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        features=(b, b, 2 * b, 4 * b, 8 * b, b),
        deep_supervision=deep_supervision,
        **kwargs,
    )
    return HeadsAsTensor(net, deep_supervision)


@register_model(
    "segresnet",
    ModelInfo(
        family="segmentation",
        output="logit_map",
        multiple=8,
        min_size=8,
        width_option="base_filters",
        tiny={"base_filters": 8, "blocks_down": (1, 1, 1, 1)},
    ),
)
def build_segresnet(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    base_filters: int = 16,
    **kwargs: Any,
) -> nn.Module:
    """MONAI SegResNet (Myronenko); ``base_filters`` is ``init_filters`` (a multiple of 8 by default)."""
    from monai.networks.nets import SegResNet

    _no_deep_supervision("segresnet", deep_supervision)
    blocks_down = kwargs.get("blocks_down", (1, 2, 2, 4))
    if patch_size is not None:
        _require_patch("segresnet", patch_size, 2 ** (len(blocks_down) - 1))
    return _construct(
        "segresnet",
        SegResNet,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        init_filters=base_filters,
        **kwargs,
    )


@register_model(
    "unetr",
    ModelInfo(
        family="segmentation",
        output="logit_map",
        needs_patch_size=True,
        multiple=16,
        min_size=16,
        width_option="feature_size",
        tiny={"feature_size": 4, "hidden_size": 24, "mlp_dim": 48, "num_heads": 2},
    ),
)
def build_unetr(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    feature_size: int = 16,
    hidden_size: int = 768,
    mlp_dim: int = 3072,
    num_heads: int = 12,
    **kwargs: Any,
) -> nn.Module:
    """MONAI UNETR (Hatamizadeh et al.); its ViT is built for ``img_size = patch_size`` (multiple of 16)."""
    from monai.networks.nets import UNETR

    _no_deep_supervision("unetr", deep_supervision)
    img_size = _require_patch("unetr", patch_size, 16)
    return _construct(
        "unetr",
        UNETR,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        img_size=img_size,
        feature_size=feature_size,
        hidden_size=hidden_size,
        mlp_dim=mlp_dim,
        num_heads=num_heads,
        **kwargs,
    )


@register_model(
    "swinunetr",
    ModelInfo(
        family="segmentation",
        output="logit_map",
        multiple=32,
        min_size=(64, 32, 32),  # instance norm needs more than one voxel at the bottleneck
        tiny={"feature_size": 12, "depths": (1, 1, 1, 1)},
    ),
)
def build_swinunetr(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    feature_size: int = 24,
    **kwargs: Any,
) -> nn.Module:
    """MONAI SwinUNETR (Hatamizadeh et al.); inputs must be multiples of 32 per axis.

    MONAI 1.6 no longer takes ``img_size``; ``patch_size`` is only validated here.
    ``feature_size`` must be a multiple of 12.
    """
    from monai.networks.nets import SwinUNETR

    _no_deep_supervision("swinunetr", deep_supervision)
    if patch_size is not None:
        _require_patch("swinunetr", patch_size, 32)
    if feature_size % 12:
        raise ConfigError(f"model 'swinunetr': feature_size must be a multiple of 12, got {feature_size}")
    return _construct(
        "swinunetr",
        SwinUNETR,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        feature_size=feature_size,
        **kwargs,
    )
