"""One-stage detectors: MONAI's RetinaNet on a ResNet-FPN backbone built from MONAI blocks.

MONAI's own ``resnet_fpn_feature_extractor`` reaches for torchvision (``_validate_trainable_layers``
and ``IntermediateLayerGetter``), which is not installed beside the CPU torch here, so the backbone is
assembled from MONAI's ``ResNet`` stages and ``FeaturePyramidNetwork`` directly (:class:`ResNetFPN`).

The registered model (``retinanet``, output kind ``"anchors"``) returns one tensor
``(B, A, K + 2 * dims)``: per anchor (MONAI's order, level by level, locations then anchor shapes),
the K class logits then the 2 * dims box-regression codes. The MONAI ``RetinaNet`` stays reachable as
``.retinanet`` (its head outputs are what MONAI's ``RetinaNetDetector`` trains).

Example:
    >>> net = build_retinanet(spatial_dims=2, in_channels=1, out_channels=2, base_filters=8)  # doctest: +SKIP
    >>> net(torch.zeros(1, 1, 64, 64)).shape  # doctest: +SKIP
    torch.Size([1, 252, 6])
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from medsight.errors import ConfigError
from medsight.models import register_model
from medsight.models.info import ModelInfo

STEM_STRIDE = 4  # MONAI ResNet: a stride-2 stem convolution then a stride-2 max-pool


def level_strides(returned_layers: list[int]) -> list[int]:
    """The stride of each output level: the returned ResNet stages, then the FPN's extra max-pool."""
    strides = [STEM_STRIDE * 2 ** (k - 1) for k in returned_layers]
    return [*strides, strides[-1] * 2]


class ResNetFPN(nn.Module):
    """A MONAI ResNet's stages with a MONAI FeaturePyramidNetwork on the returned ones (a RetinaNet
    ``feature_extractor``: an image batch in, ``{name: feature map}`` out, finest first)."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        base_filters: int,
        layers: list[int],
        returned_layers: list[int],
        fpn_channels: int,
    ) -> None:
        from monai.networks.blocks.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool
        from monai.networks.nets.resnet import ResNet

        super().__init__()
        widths = [base_filters * 2**i for i in range(4)]
        self.resnet = ResNet(
            block="basic",
            layers=layers,
            block_inplanes=widths,
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=2,
            feed_forward=False,
        )
        self.returned = [f"layer{k}" for k in returned_layers]
        self.fpn = FeaturePyramidNetwork(
            spatial_dims=spatial_dims,
            in_channels_list=[widths[k - 1] for k in returned_layers],
            out_channels=fpn_channels,
            extra_blocks=LastLevelMaxPool(spatial_dims),
        )
        self.out_channels = fpn_channels
        self.last = max(returned_layers)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        r = self.resnet
        x = r.act(r.bn1(r.conv1(x)))
        x = r.maxpool(x)
        features: OrderedDict[str, torch.Tensor] = OrderedDict()
        for k in range(1, self.last + 1):
            x = getattr(r, f"layer{k}")(x)
            if f"layer{k}" in self.returned:
                features[f"layer{k}"] = x
        return self.fpn(features)


class AnchorOutputs(nn.Module):
    """MONAI's RetinaNet with its head outputs flattened to one ``(B, A, K + 2 * dims)`` tensor."""

    def __init__(self, retinanet: nn.Module, strides: list[int]) -> None:
        super().__init__()
        self.retinanet = retinanet
        self.strides = strides
        self.spatial_dims: int = retinanet.spatial_dims
        self.num_classes: int = retinanet.num_classes
        self.num_anchors: int = retinanet.num_anchors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = self.retinanet(x)
        cls = flatten_levels(heads["classification"], self.num_anchors, self.spatial_dims)
        box = flatten_levels(heads["box_regression"], self.num_anchors, self.spatial_dims)
        return torch.cat([cls, box], dim=2)


def flatten_levels(maps: list[torch.Tensor], num_anchors: int, dims: int) -> torch.Tensor:
    """Per-level head maps ``(B, A * C, *grid)`` -> ``(B, sum(grid * A), C)``, MONAI's anchor order
    (as ``RetinaNetDetector._reshape_maps``: locations in C order, then the anchor shapes)."""
    out = []
    for m in maps:
        b, channels = m.shape[0], m.shape[1] // num_anchors
        v = m.view(b, num_anchors, channels, *m.shape[2:])
        v = v.permute(0, *range(3, 3 + dims), 1, 2)
        out.append(v.reshape(b, -1, channels))
    return torch.cat(out, dim=1)


@register_model(
    "retinanet",
    ModelInfo(
        family="detection",
        output="anchors",
        multiple=32,
        min_size=32,
        width_option="base_filters",
        tiny={"base_filters": 4, "fpn_channels": 8, "layers": [1, 1, 1, 1], "num_anchors": 2},
    ),
)
def build_retinanet(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None = None,
    deep_supervision: bool = False,
    base_filters: int = 16,
    layers: list[int] | None = None,
    returned_layers: list[int] | None = None,
    fpn_channels: int | None = None,
    num_anchors: int = 3,
    **unknown: Any,
) -> AnchorOutputs:
    """A RetinaNet (MONAI) on a ResNet-FPN of width ``base_filters`` (stage widths x1, x2, x4, x8).

    Args:
        out_channels: the number of foreground classes (one sigmoid logit each).
        patch_size: the input size; each side must be a multiple of the coarsest level's stride.
        layers: basic blocks per ResNet stage (default ResNet-10-like ``[1, 1, 1, 1]``).
        returned_layers: the stages the FPN reads (default ``[2, 3]``: strides 8, 16 and the extra 32).
        fpn_channels: channels of the FPN and of the heads (default 4 x ``base_filters``).
        num_anchors: anchor shapes per location (the plan's anchor shapes).

    Raises:
        ConfigError: an unknown option, deep supervision, or a patch size the strides do not divide.
    """
    from monai.apps.detection.networks.retinanet_network import RetinaNet

    if unknown:
        raise ConfigError(f"model 'retinanet': unknown options {sorted(unknown)}")
    if deep_supervision:
        raise ConfigError("model 'retinanet': deep_supervision is not supported (a one-stage detector)")
    returned = list(returned_layers or [2, 3])
    if not returned or min(returned) < 1 or max(returned) > 4 or returned != sorted(set(returned)):
        raise ConfigError(
            f"model 'retinanet': returned_layers must be increasing stages in 1..4, got {returned}"
        )
    strides = level_strides(returned)
    if patch_size is not None and any(int(p) % strides[-1] for p in patch_size):
        raise ConfigError(
            f"model 'retinanet': every patch_size side must be a multiple of {strides[-1]} "
            f"(the coarsest stride), got {list(patch_size)}"
        )
    channels = int(fpn_channels or 4 * base_filters)
    extractor = ResNetFPN(
        spatial_dims, in_channels, base_filters, list(layers or [1, 1, 1, 1]), returned, channels
    )
    net = RetinaNet(
        spatial_dims=spatial_dims,
        num_classes=out_channels,
        num_anchors=num_anchors,
        feature_extractor=extractor,
        size_divisible=strides[-1],
    )
    return AnchorOutputs(net, strides)


__all__ = ["AnchorOutputs", "ResNetFPN", "build_retinanet", "flatten_levels", "level_strides"]
