"""Networks of the ``synthesize`` family, registered in :data:`medsight.models.MODELS`.

* ``dcgan_generator``: the DCGAN generator (Radford et al. 2016): a latent map ``(B, in_channels, 1, 1)``
  (``in_channels`` = latent size, plus one-hot class channels for a class-conditional GAN) up-sampled by
  transposed convolutions with batch norm to ``(B, out_channels, *patch_size)`` in [0, 1] (sigmoid).
  Fully convolutional, so a larger latent map gives a larger picture (output kind ``"any_map"``).
* ``dcgan_discriminator``: strided convolutions down to 4 px, summed, then a linear real/fake logit per
  image ``(B, out_channels)`` (``"logits"``); ``num_classes > 0`` adds the projection term of Miyato &
  Koyama 2018 (``<embed(y), features>``) for class-conditional GANs; ``norm="none"`` or ``"instance"``
  for the WGAN-GP critic (the gradient penalty is per sample, which batch norm breaks).
* ``patch_discriminator``: MONAI's :class:`~monai.networks.nets.PatchDiscriminator` (pix2pix's
  PatchGAN) returning its last output only: patch logits ``(B, out_channels, *reduced)`` (``"any_map"``).

The generative pair of a run is :class:`GAN` (generator + discriminator, not registered: built from
the two registered networks by the task).

Example:
    >>> from medsight.models import build_model
    >>> g = build_model("dcgan_generator", spatial_dims=2, in_channels=16, out_channels=1,
    ...                 patch_size=[28, 28], base_filters=8)
    >>> g(torch.randn(2, 16, 1, 1)).shape
    torch.Size([2, 1, 28, 28])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medsight.errors import ConfigError
from medsight.models import register_model
from medsight.models.info import ModelInfo

DISC_LEVELS = 3  # stride-2 levels of the DCGAN discriminator
MIN_BASE = 4  # px: the generator starts from (and the discriminator ends at) maps of at least this side


def levels_for(patch_size: list[int]) -> int:
    """Stride-2 levels of the generator: the most with every side a multiple of 2**levels and >= 4 px."""
    levels = 0
    while all(s % 2 ** (levels + 1) == 0 and s // 2 ** (levels + 1) >= MIN_BASE for s in patch_size):
        levels += 1
    return levels


def _conv(dims: int, transposed: bool = False) -> type[nn.Module]:
    if transposed:
        return nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
    return nn.Conv2d if dims == 2 else nn.Conv3d


def _norm(dims: int, kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(channels)
    if kind == "instance":
        return (nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d)(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"norm: expected 'batch', 'instance' or 'none', got {kind!r}")


def _check(name: str, deep_supervision: bool) -> None:
    if deep_supervision:
        raise ConfigError(f"model {name!r}: deep_supervision=True is for segmentation models, got True")


class DCGANGenerator(nn.Module):
    """Latent map -> picture in [0, 1]; see the module doc."""

    def __init__(
        self, dims: int, latent: int, out_channels: int, patch_size: list[int], base_filters: int
    ) -> None:
        super().__init__()
        levels = levels_for(patch_size)
        base = [s // 2**levels for s in patch_size]
        width = base_filters * 2**levels
        conv_t = _conv(dims, transposed=True)
        layers: list[nn.Module] = [
            conv_t(latent, width, kernel_size=tuple(base), bias=False),
            _norm(dims, "batch", width),
            nn.ReLU(inplace=True),
        ]
        for _ in range(levels):
            layers += [
                conv_t(width, width // 2, 4, stride=2, padding=1, bias=False),
                _norm(dims, "batch", width // 2),
                nn.ReLU(inplace=True),
            ]
            width //= 2
        layers += [_conv(dims)(width, out_channels, 3, padding=1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)
        self.latent_channels = latent

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


@register_model(
    "dcgan_generator",
    ModelInfo(
        family="generative",
        output="any_map",
        needs_patch_size=True,
        min_size=4,
        width_option="base_filters",
        tiny={"base_filters": 4},
    ),
)
def build_dcgan_generator(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    base_filters: int = 32,
    **_: Any,
) -> nn.Module:
    """The DCGAN generator for pictures of ``patch_size`` from ``in_channels`` latent channels."""
    _check("dcgan_generator", deep_supervision)
    if patch_size is None:
        raise ConfigError("model 'dcgan_generator': patch_size (the picture size) is required, got None")
    if min(patch_size) < MIN_BASE:
        raise ConfigError(
            f"model 'dcgan_generator': patch_size sides must be >= {MIN_BASE}, got {patch_size}"
        )
    return DCGANGenerator(spatial_dims, in_channels, out_channels, list(patch_size), base_filters)


class DCGANDiscriminator(nn.Module):
    """Picture -> real/fake logit (with a class projection when ``num_classes``); see the module doc."""

    def __init__(
        self, dims: int, in_channels: int, out_channels: int, base_filters: int, norm: str, num_classes: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv(dims)(in_channels, base_filters, 3, padding=1), nn.LeakyReLU(0.2)]
        width = base_filters
        for _ in range(DISC_LEVELS):
            layers += [
                _conv(dims)(width, width * 2, 4, stride=2, padding=1, bias=norm == "none"),
                _norm(dims, norm, width * 2),
                nn.LeakyReLU(0.2),
            ]
            width *= 2
        self.body = nn.Sequential(*layers)
        self.linear = nn.Linear(width, out_channels)
        self.embed = nn.Embedding(num_classes, width) if num_classes > 0 else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.body(x).flatten(2).mean(-1)
        out = self.linear(h)
        if self.embed is not None:
            if labels is None:
                raise ConfigError("a class-conditional discriminator needs the labels of its inputs")
            out = out + (self.embed(labels.long()) * h).sum(1, keepdim=True)
        return out


@register_model(
    "dcgan_discriminator",
    ModelInfo(
        family="generative",
        output="logits",
        min_size=8,
        width_option="base_filters",
        tiny={"base_filters": 4},
    ),
)
def build_dcgan_discriminator(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    base_filters: int = 32,
    norm: str = "batch",
    num_classes: int = 0,
    **_: Any,
) -> nn.Module:
    """``DISC_LEVELS`` stride-2 levels of ``base_filters * 2**i`` channels, mean-pooled, a linear logit."""
    _check("dcgan_discriminator", deep_supervision)
    return DCGANDiscriminator(spatial_dims, in_channels, out_channels, base_filters, norm, num_classes)


class LastOutput(nn.Module):
    """MONAI's PatchDiscriminator returns every layer's output; this keeps the last (the patch logits)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[-1]


@register_model(
    "patch_discriminator",
    ModelInfo(
        family="generative",
        output="any_map",
        min_size=16,
        width_option="base_filters",
        tiny={"base_filters": 4, "layers": 2},
    ),
)
def build_patch_discriminator(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    base_filters: int = 32,
    layers: int = 3,
    norm: str = "BATCH",
    **_: Any,
) -> nn.Module:
    """pix2pix's 70x70 PatchGAN (MONAI ``PatchDiscriminator``, ``layers`` stride-2 convolutions)."""
    from monai.networks.nets import PatchDiscriminator

    _check("patch_discriminator", deep_supervision)
    net = PatchDiscriminator(
        spatial_dims=spatial_dims,
        channels=base_filters,
        in_channels=in_channels,
        out_channels=out_channels,
        num_layers_d=layers,
        norm=norm,
    )
    return LastOutput(net)


class GAN(nn.Module):
    """A generator and a discriminator trained against each other (one run's model).

    ``latent_size`` noise channels (plus ``num_classes`` one-hot channels for a class-conditional
    GAN) feed the generator; :meth:`latent` draws them repeatably from a ``torch.Generator``. For
    translation (pix2pix) the generator maps a source image to a target image and ``latent_size`` is 0.
    """

    def __init__(
        self, generator: nn.Module, discriminator: nn.Module, latent_size: int = 0, num_classes: int = 0
    ) -> None:
        super().__init__()
        self.generator, self.discriminator = generator, discriminator
        self.latent_size, self.num_classes = latent_size, num_classes

    def latent(
        self, n: int, dims: int, labels: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``(n, latent_size [+ num_classes], 1, ...)`` latent maps: N(0, 1) noise, then one-hot labels."""
        z = torch.randn((n, self.latent_size, *[1] * dims), generator=generator)
        if self.num_classes:
            if labels is None:
                raise ConfigError("a class-conditional generator needs a class for every sample")
            onehot = nn.functional.one_hot(labels.long().cpu(), self.num_classes).float()
            z = torch.cat([z, onehot.reshape(n, self.num_classes, *[1] * dims)], 1)
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The generator (a latent map for a GAN, a source image for translation)."""
        return self.generator(x)


class CycleGAN(GAN):
    """CycleGAN's four networks: ``generator`` (source -> target, the one predict uses), ``inverse``
    (target -> source) and ``discriminator`` holding the target and source PatchGANs."""

    def __init__(
        self, generator: nn.Module, inverse: nn.Module, target_d: nn.Module, source_d: nn.Module
    ) -> None:
        super().__init__(generator, nn.ModuleList([target_d, source_d]))
        self.inverse = inverse

    @property
    def discriminators(self) -> tuple[nn.Module, nn.Module]:
        """(target discriminator, source discriminator)."""
        return self.discriminator[0], self.discriminator[1]


__all__ = ["CycleGAN", "GAN", "DCGANDiscriminator", "DCGANGenerator", "LastOutput", "levels_for"]
