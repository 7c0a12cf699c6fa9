"""Classification networks, registered in :data:`medsight.models.MODELS` beside the segmentation ones.

Built with the same call, ``build_model(name, spatial_dims=, in_channels=, out_channels=K,
patch_size=<input image size>, **kwargs)``; every classifier returns logits ``(B, K)`` in train
and eval mode alike, and none supports ``deep_supervision``. Builders import MONAI lazily.

Example:
    >>> from medsight.models import build_model
    >>> net = build_model("resnet18", spatial_dims=2, in_channels=1, out_channels=9, patch_size=[28, 28])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from medsight.errors import ConfigError
from medsight.models import register_model
from medsight.models.info import ModelInfo
from medsight.models.segmentation import _construct

SMALL_INPUT_MAX = 64  # every side at most this: CIFAR-style ResNet stem by default
VIT_TOKEN_PATCHES = (16, 8, 4, 2, 1)
VIT_MIN_GRID = {2: 7, 3: 4}  # fewest patches per axis the default ViT patch must leave
RESNET_INFO = ModelInfo(family="classification", width_option="widen_factor", tiny={"widen_factor": 0.25})
# TransMed's last axis holds the slices, grouped 3 by 3 into images
TRANSMED_INFO = ModelInfo(
    family="classification", needs_patch_size=True, multiple=(1, 1, 3), min_size=(8, 8, 3)
)


def _classifier(name: str, deep_supervision: bool) -> None:
    if deep_supervision:
        raise ConfigError(
            f"model {name!r}: deep_supervision=True is for segmentation models; a classifier has one "
            "output, got deep_supervision=True"
        )


def _require_size(name: str, patch_size: list[int] | None, why: str) -> list[int]:
    if patch_size is None:
        raise ConfigError(f"model {name!r}: patch_size (the input image size) is required ({why}), got None")
    return patch_size


def _resnet(
    name: str,
    factory: Callable[..., nn.Module],
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    small_input: bool | None,
    kwargs: dict[str, Any],
) -> nn.Module:
    _classifier(name, deep_supervision)
    if small_input is None:
        small_input = patch_size is not None and max(patch_size) <= SMALL_INPUT_MAX
    return _construct(
        name,
        factory,
        pretrained=False,
        spatial_dims=spatial_dims,
        n_input_channels=in_channels,
        num_classes=out_channels,
        conv1_t_size=3 if small_input else 7,
        conv1_t_stride=1 if small_input else 2,
        no_max_pool=bool(small_input),
        **kwargs,
    )


@register_model("resnet18", RESNET_INFO)
def build_resnet18(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    small_input: bool | None = None,
    **kwargs: Any,
) -> nn.Module:
    """MONAI ResNet-18. ``small_input`` (default: every side of ``patch_size`` <= 64) selects the
    CIFAR-style stem (3x3 stride-1 convolution, no max-pool), as MedMNIST's ResNet-18@28 uses;
    otherwise the standard 7x7 stride-2 stem and max-pool. Extra kwargs go to MONAI ``ResNet``."""
    from monai.networks.nets import resnet18

    return _resnet(
        "resnet18", resnet18, spatial_dims, in_channels, out_channels, patch_size, deep_supervision,
        small_input, kwargs,
    )  # fmt: skip


@register_model("resnet34", RESNET_INFO)
def build_resnet34(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    small_input: bool | None = None,
    **kwargs: Any,
) -> nn.Module:
    """MONAI ResNet-34; ``small_input`` as for ``resnet18``."""
    from monai.networks.nets import resnet34

    return _resnet(
        "resnet34", resnet34, spatial_dims, in_channels, out_channels, patch_size, deep_supervision,
        small_input, kwargs,
    )  # fmt: skip


@register_model("resnet50", RESNET_INFO)
def build_resnet50(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    small_input: bool | None = None,
    **kwargs: Any,
) -> nn.Module:
    """MONAI ResNet-50 (bottleneck blocks); ``small_input`` as for ``resnet18``."""
    from monai.networks.nets import resnet50

    return _resnet(
        "resnet50", resnet50, spatial_dims, in_channels, out_channels, patch_size, deep_supervision,
        small_input, kwargs,
    )  # fmt: skip


@register_model(
    "densenet121",
    ModelInfo(
        family="classification",
        min_size=32,
        tiny={"init_features": 8, "growth_rate": 8, "block_config": (1, 1, 1, 1)},
    ),
)
def build_densenet121(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    **kwargs: Any,
) -> nn.Module:
    """MONAI DenseNet121 (extra kwargs, e.g. ``init_features``, ``growth_rate``, go to it)."""
    from monai.networks.nets import DenseNet121

    _classifier("densenet121", deep_supervision)
    return _construct(
        "densenet121",
        DenseNet121,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        pretrained=False,
        **kwargs,
    )


@register_model("efficientnet_b0", ModelInfo(family="classification", min_size=32))
def build_efficientnet_b0(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    **kwargs: Any,
) -> nn.Module:
    """MONAI EfficientNetBN ``"efficientnet-b0"``, randomly initialised (nothing is downloaded)."""
    from monai.networks.nets import EfficientNetBN

    _classifier("efficientnet_b0", deep_supervision)
    return _construct(
        "efficientnet_b0",
        EfficientNetBN,
        model_name="efficientnet-b0",
        pretrained=False,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=out_channels,
        **kwargs,
    )


@register_model(
    "seresnet50",
    ModelInfo(family="classification", min_size=8, tiny={"layers": (1, 1, 1, 1), "inplanes": 16}),
)
def build_seresnet50(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    **kwargs: Any,
) -> nn.Module:
    """MONAI SEResNet50 (squeeze-and-excitation ResNet-50), randomly initialised."""
    from monai.networks.nets import SEResNet50

    _classifier("seresnet50", deep_supervision)
    return _construct(
        "seresnet50",
        SEResNet50,
        pretrained=False,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=out_channels,
        **kwargs,
    )


def vit_token_patch(patch_size: list[int]) -> int:
    """The default ViT patch edge for an image of ``patch_size``.

    The largest of 16, 8, 4, 2, 1 that divides every side and leaves at least 7 patches per
    side in 2D (4 in 3D); failing that, the largest that divides every side. E.g. 4 for 28 px,
    16 for 224 px, 8 for a 32 px cube.
    """
    dividing = [p for p in VIT_TOKEN_PATCHES if all(s % p == 0 for s in patch_size)]
    min_grid = VIT_MIN_GRID.get(len(patch_size), 4)
    roomy = [p for p in dividing if min(patch_size) // p >= min_grid]
    return (roomy or dividing)[0]


class LogitsOnly(nn.Module):
    """Wrap a network returning ``(logits, extras)`` (MONAI's ViT) so it returns the logits alone."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


@register_model(
    "vit",
    ModelInfo(
        family="classification",
        needs_patch_size=True,
        tiny={"hidden_size": 32, "mlp_dim": 64, "num_layers": 1, "num_heads": 2},
    ),
)
def build_vit(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    token_patch: int | None = None,
    hidden_size: int = 192,
    mlp_dim: int = 768,
    num_layers: int = 12,
    num_heads: int = 3,
    **kwargs: Any,
) -> nn.Module:
    """MONAI ViT with a class token and a linear head (no Tanh), returning the logits only.

    Defaults are ViT-Tiny (DeiT-Ti) sizes. ``token_patch`` is the ViT patch edge (default from
    :func:`vit_token_patch`); it must divide every side of ``patch_size``.
    """
    from monai.networks.nets import ViT

    _classifier("vit", deep_supervision)
    size = _require_size("vit", patch_size, "the position embedding depends on it")
    p = vit_token_patch(size) if token_patch is None else int(token_patch)
    if p < 1 or any(s % p for s in size):
        raise ConfigError(
            f"model 'vit': token_patch must divide every side of patch_size {size}, got {token_patch}"
        )
    if hidden_size % num_heads:
        raise ConfigError(
            f"model 'vit': hidden_size must be a multiple of num_heads, got {hidden_size} and {num_heads}"
        )
    net = _construct(
        "vit",
        ViT,
        in_channels=in_channels,
        img_size=size,
        patch_size=p,
        hidden_size=hidden_size,
        mlp_dim=mlp_dim,
        num_layers=num_layers,
        num_heads=num_heads,
        classification=True,
        num_classes=out_channels,
        spatial_dims=spatial_dims,
        post_activation=None,
        **kwargs,
    )
    return LogitsOnly(net)


@register_model("transmed", TRANSMED_INFO)
def build_transmed(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    **kwargs: Any,
) -> nn.Module:
    """TransMed (Dai et al. 2021), see :mod:`medsight.models.transmed`; ``variant="tiny"|"small"``.

    ``patch_size`` is ``(H, W, D)`` (``D``, the slice axis, a multiple of 3) or ``(H, W)``.
    """
    from medsight.models.transmed import TransMed

    _classifier("transmed", deep_supervision)
    size = _require_size("transmed", patch_size, "the token count depends on it")
    return _construct("transmed", TransMed, spatial_dims=spatial_dims, in_channels=in_channels,
                      num_classes=out_channels, image_size=size, **kwargs)  # fmt: skip


@register_model("transmed_cnn", TRANSMED_INFO)
def build_transmed_cnn(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    **kwargs: Any,
) -> nn.Module:
    """TransMed's CNN-only baseline: the same slice images and CNN, mean-pooled, a linear head."""
    from medsight.models.transmed import TransMedCNN

    _classifier("transmed_cnn", deep_supervision)
    size = _require_size("transmed_cnn", patch_size, "the slice grouping depends on it")
    return _construct("transmed_cnn", TransMedCNN, spatial_dims=spatial_dims, in_channels=in_channels,
                      num_classes=out_channels, image_size=size, **kwargs)  # fmt: skip
