"""Networks of the ``anomaly`` family, registered in :data:`medsight.models.MODELS`.

* ``conv_ae``: MONAI's convolutional :class:`~monai.networks.nets.AutoEncoder` with a narrow code
  (the last encoder level has ``code_channels`` channels), returning the reconstruction
  (``logit_map``: ``(B, out_channels, *spatial)``). Its ``code(x)`` is the bottleneck (for sparse and
  contractive penalties).
* ``conv_vae``: MONAI's :class:`~monai.networks.nets.VarAutoEncoder` behind :class:`VAE`, whose
  ``forward`` returns the reconstruction only and ``variational(x)`` returns ``(recon, mu, logvar)``.
* ``rbm``, ``dbn``, ``dbm``: the energy models of :mod:`medsight.models.energy` and
  :mod:`medsight.models.dbm` on flattened images (``out_channels``: the top layer's units; ``forward``
  returns its probabilities, the model as an encoder). See :mod:`medsight.models.energy_images`.

Example:
    >>> from medsight.models import build_model
    >>> net = build_model("conv_ae", spatial_dims=2, in_channels=1, out_channels=1, patch_size=[32, 32])
    >>> net(torch.rand(2, 1, 32, 32)).shape
    torch.Size([2, 1, 32, 32])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medsight.errors import ConfigError
from medsight.models import register_model
from medsight.models.info import ModelInfo

AE_LEVELS = 3  # stride-2 levels: input sides must be multiples of 2**3
AE_INFO = ModelInfo(
    family="generative",
    output="logit_map",
    multiple=2**AE_LEVELS,
    min_size=8,
    width_option="base_filters",
    tiny={"base_filters": 4},
)
VAE_INFO = ModelInfo(
    family="generative",
    output="logit_map",
    needs_patch_size=True,
    multiple=2**AE_LEVELS,
    min_size=8,
    width_option="base_filters",
    tiny={"base_filters": 4, "latent_size": 8},
)


def check_generative(
    name: str, patch_size: list[int] | None, deep_supervision: bool, needs_size: bool
) -> None:
    """The contract checks of an autoencoder builder: no deep supervision, sides multiple of 2**levels."""
    if deep_supervision:
        raise ConfigError(f"model {name!r}: deep_supervision=True is for segmentation models, got True")
    if patch_size is None:
        if needs_size:
            raise ConfigError(f"model {name!r}: patch_size (the input image size) is required, got None")
        return
    step = 2**AE_LEVELS
    if any(s % step for s in patch_size):
        raise ConfigError(
            f"model {name!r}: every patch_size side must be a multiple of {step}, got {patch_size}"
        )


def _channels(base_filters: int, last: int) -> tuple[int, ...]:
    return tuple(base_filters * 2**i for i in range(AE_LEVELS - 1)) + (last,)


class ConvAE(nn.Module):
    """MONAI's AutoEncoder with its bottleneck exposed as :meth:`code`."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.intermediate(self.net.encode(x))

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.net.decode(code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.code(x))


@register_model("conv_ae", AE_INFO)
def build_conv_ae(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    base_filters: int = 16,
    code_channels: int = 8,
    norm: str = "batch",
    **kwargs: Any,
) -> nn.Module:
    """A convolutional autoencoder (MONAI ``AutoEncoder``): ``AE_LEVELS`` stride-2 levels of
    ``base_filters * 2**i`` channels, the last of ``code_channels`` (the bottleneck), mirrored."""
    from monai.networks.nets import AutoEncoder

    check_generative("conv_ae", patch_size, deep_supervision, needs_size=False)
    net = AutoEncoder(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=_channels(base_filters, code_channels),
        strides=(2,) * AE_LEVELS,
        norm=norm,
        **kwargs,
    )
    return ConvAE(net)


class VAE(nn.Module):
    """MONAI's VarAutoEncoder: ``forward`` -> reconstruction; ``variational`` -> (recon, mu, logvar)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def variational(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        recon, mu, logvar, _ = self.net(x)
        return recon, mu, logvar

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.variational(x)[0]


@register_model("conv_vae", VAE_INFO)
def build_conv_vae(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    base_filters: int = 16,
    latent_size: int = 32,
    norm: str = "batch",
    **kwargs: Any,
) -> nn.Module:
    """A variational autoencoder (MONAI ``VarAutoEncoder``, sigmoid output for inputs in [0, 1]; the
    posterior mean at inference)."""
    from monai.networks.nets import VarAutoEncoder

    check_generative("conv_vae", patch_size, deep_supervision, needs_size=True)
    assert patch_size is not None
    net = VarAutoEncoder(
        spatial_dims=spatial_dims,
        in_shape=(in_channels, *patch_size),
        out_channels=out_channels,
        latent_size=latent_size,
        channels=_channels(base_filters, base_filters * 2 ** (AE_LEVELS - 1)),
        strides=(2,) * AE_LEVELS,
        norm=norm,
        use_mean_at_inference=True,
        **kwargs,
    )
    return VAE(net)


from medsight.models import energy_images as _energy_images  # noqa: E402,F401  (registers rbm, dbn, dbm)
