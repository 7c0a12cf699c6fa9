"""Image-to-image networks for enhancement and reconstruction (family ``"enhancement"``).

Every network maps a degraded image ``(B, C_in, *spatial)`` to an enhanced one ``(B, C_out, *spatial)``
of the same size, and adapts to any size (inputs are padded internally to the multiple the layout
needs and cropped back), so the same weights enhance a 240 x 240 slice and a 384 x 384 one.

- ``residual_unet``: MONAI's BasicUNet plus a global residual (the network learns the correction), with
  batch norms, so its output does not depend on the extent it sees (trained on crops, run on slices);

Every residual branch's last layer starts at zero, so an untrained network returns its input (for the
k-space cascade: the zero-filled image) and training only improves on it.

- ``dncnn``: DnCNN (Zhang et al. 2017), a plain conv-BN-ReLU stack predicting the residual;
- ``redcnn``: RED-CNN (Chen et al. 2017), a residual encoder-decoder with shortcuts, made for low-dose CT;
- ``kspace_cascade``: an unrolled reconstruction for Cartesian k-space, a cascade of small U-Nets each
  followed by a hard data-consistency layer that puts the acquired samples back, so the output's
  k-space equals the measured k-space on the mask (up to float rounding).

The k-space network's input channels are the zero-filled image (real, or real and imaginary) and, last,
the sampling mask as an image (1 on acquired lines); its outputs are the first ``out_channels`` of
(magnitude, real, imaginary). Its Fourier transforms are matrix products with the centred orthonormal
DFT (:func:`centred_dft`), the transform of :func:`medsight.data.degradations.fft2c`, in real arithmetic,
so the network exports to ONNX (which has no complex tensors).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medsight.models import register_model
from medsight.models.info import ModelInfo

UNET_MULTIPLE = 16  # BasicUNet halves the size four times


def _features(base: int) -> tuple[int, int, int, int, int, int]:
    return (base, base, 2 * base, 4 * base, 8 * base, base)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``x`` (B, C, H, W[, D]) padded at the end of each spatial axis (replicate) to a multiple of
    ``multiple`` (at least twice it, so the bottleneck keeps more than one pixel for its instance norm),
    and its original spatial size to crop back with."""
    sizes = x.shape[2:]
    pad: list[int] = []
    for n in reversed(sizes):
        pad += [0, max(2 * multiple, math.ceil(int(n) / multiple) * multiple) - int(n)]
    if any(pad):
        x = F.pad(x, pad, mode="replicate")
    return x, tuple(int(n) for n in sizes)  # type: ignore[return-value]


def crop_to(x: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    return x[(slice(None), slice(None), *(slice(0, n) for n in sizes))]


def _zero(layer: nn.Module) -> nn.Module:
    """Zero a residual branch's last layer, so the network starts as the identity (its input unchanged)."""
    nn.init.zeros_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)
    return layer


def _residual(x: torch.Tensor, out_channels: int) -> torch.Tensor:
    """The input as the identity part of a global residual: all of it when the channels match, else
    its first channel for every output channel."""
    if x.shape[1] == out_channels:
        return x
    return x[:, :1].expand(-1, out_channels, *x.shape[2:])


class ResidualUNet(nn.Module):
    """MONAI BasicUNet with a global residual: ``x + unet(x)`` (see :func:`_residual`).

    ``norm``: ``"batch"`` for a network trained on crops and run on larger slices (its statistics do not
    depend on the input's extent; an instance norm's do: trained on 96-pixel crops, the residual U-Net
    made a 192-pixel brain MR slice brighter by 7% of its 99th percentile); ``"instance"`` inside the
    k-space cascade, which sees whole slices in training and inference."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        base_filters: int = 32,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        from monai.networks.nets import BasicUNet

        self.out_channels = out_channels
        self.unet = BasicUNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            features=_features(base_filters),
            act=("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
            norm=(norm, {"affine": True}),
            upsample="deconv",
        )
        _zero(self.unet.final_conv)  # starts as the identity: the residual is learnt from zero

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, sizes = pad_to_multiple(x, UNET_MULTIPLE)
        return _residual(x, self.out_channels) + crop_to(self.unet(padded), sizes)


class DnCNN(nn.Module):
    """DnCNN: ``depth`` 3x3 convolutions (BN + ReLU inside) predicting the noise, subtracted from x."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, features: int = 64, depth: int = 17
    ) -> None:
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        norm = nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
        layers: list[nn.Module] = [conv(in_channels, features, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [
                conv(features, features, 3, padding=1, bias=False),
                norm(features),
                nn.ReLU(inplace=True),
            ]
        layers.append(_zero(conv(features, out_channels, 3, padding=1)))
        self.body = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _residual(x, self.out_channels) - self.body(x)


class REDCNN(nn.Module):
    """RED-CNN: five 5x5 convolutions, five transposed convolutions, shortcuts every two layers and from
    the input (the paper's layout, with size-preserving padding)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, features: int = 96) -> None:
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        deconv = nn.ConvTranspose2d if spatial_dims == 2 else nn.ConvTranspose3d
        self.enc = nn.ModuleList(
            [conv(in_channels if i == 0 else features, features, 5, padding=2) for i in range(5)]
        )
        self.dec = nn.ModuleList(
            [deconv(features, out_channels if i == 4 else features, 5, padding=2) for i in range(5)]
        )
        _zero(self.dec[4])
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for i, layer in enumerate(self.enc):
            h = F.relu(layer(h))
            if i in (1, 3):
                skips.append(h)
        for i, layer in enumerate(self.dec):
            h = layer(h)
            if i in (1, 3):
                h = h + skips.pop()
            if i < 4:
                h = F.relu(h)
        return h + _residual(x, self.out_channels)


# ---------------------------------------------------------------------------------------------- k-space


def centred_dft(n: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of the centred orthonormal DFT matrix of size ``n``:
    ``F[k, j] = exp(-2 pi i (k - c)(j - c) / n) / sqrt(n)`` with ``c = n // 2``, so ``F = cos - i sin``
    and ``F @ x`` is ``fftshift(fft(ifftshift(x), norm="ortho"))`` along that axis."""
    idx = torch.arange(n, dtype=torch.int64, device=device) - n // 2
    phase = torch.remainder(idx[:, None] * idx[None, :], n).to(torch.float64) * (2 * math.pi / n)
    scale = 1.0 / math.sqrt(n)
    return (torch.cos(phase) * scale).float(), (torch.sin(phase) * scale).float()


def _matmul_left(mat: tuple[torch.Tensor, torch.Tensor], re: torch.Tensor, im: torch.Tensor, sign: float):
    """(C - i*sign*S) @ (re + i im) along the H axis of (..., H, W)."""
    c, s = mat
    return c @ re + sign * (s @ im), c @ im - sign * (s @ re)


def _matmul_right(mat: tuple[torch.Tensor, torch.Tensor], re: torch.Tensor, im: torch.Tensor, sign: float):
    """(re + i im) @ (C - i*sign*S) along the W axis (the matrices are symmetric)."""
    c, s = mat
    return re @ c + sign * (im @ s), im @ c - sign * (re @ s)


def fft2c_real(re: torch.Tensor, im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred orthonormal 2D DFT of the last two axes of ``re + i im``, as (real, imaginary)."""
    fh, fw = centred_dft(re.shape[-2], re.device), centred_dft(re.shape[-1], re.device)
    re, im = _matmul_left(fh, re, im, 1.0)
    return _matmul_right(fw, re, im, 1.0)


def ifft2c_real(re: torch.Tensor, im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`fft2c_real` (the conjugate transform)."""
    fh, fw = centred_dft(re.shape[-2], re.device), centred_dft(re.shape[-1], re.device)
    re, im = _matmul_left(fh, re, im, -1.0)
    return _matmul_right(fw, re, im, -1.0)


class DataConsistency(nn.Module):
    """Hard data consistency: the acquired k-space where the mask is 1, the network's elsewhere."""

    def forward(
        self, re: torch.Tensor, im: torch.Tensor, k_re: torch.Tensor, k_im: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        p_re, p_im = fft2c_real(re, im)
        keep = 1.0 - mask
        return ifft2c_real(mask * k_re + keep * p_re, mask * k_im + keep * p_im)


class KSpaceCascade(nn.Module):
    """An unrolled reconstruction: ``cascades`` x (residual U-Net on (real, imag), data consistency).

    Input channels: the zero-filled image (1: real; 2: real, imaginary), then the mask (1 acquired).
    Output: the first ``out_channels`` of (magnitude, real, imaginary).
    """

    def __init__(
        self, in_channels: int, out_channels: int, cascades: int = 4, base_filters: int = 16
    ) -> None:
        super().__init__()
        if in_channels not in (2, 3) or not 1 <= out_channels <= 3:
            raise ValueError(
                f"kspace_cascade: expected 2 or 3 input channels (image real[, imag], mask) and 1-3 outputs "
                f"(magnitude, real, imag), got {in_channels} and {out_channels}"
            )
        self.complex_input = in_channels == 3
        self.out_channels = out_channels
        self.blocks = nn.ModuleList(ResidualUNet(2, 2, 2, base_filters) for _ in range(cascades))
        self.dc = DataConsistency()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        re = x[:, 0]
        im = x[:, 1] if self.complex_input else torch.zeros_like(re)
        mask = x[:, -1]
        k_re, k_im = fft2c_real(re, im)
        k_re, k_im = k_re * mask, k_im * mask  # the acquired samples (zero elsewhere)
        for block in self.blocks:
            out = block(torch.stack([re, im], dim=1))
            re, im = self.dc(out[:, 0], out[:, 1], k_re, k_im, mask)
        magnitude = torch.sqrt(re * re + im * im + 1e-12)
        return torch.stack([magnitude, re, im], dim=1)[:, : self.out_channels]


# ---------------------------------------------------------------------------------------------- registry


def _check_2d(name: str, spatial_dims: int, dims: tuple[int, ...]) -> None:
    if spatial_dims not in dims:
        raise ValueError(f"{name}: spatial_dims must be one of {dims}, got {spatial_dims}")


@register_model(
    "residual_unet",
    ModelInfo(family="enhancement", output="logit_map", min_size=8, width_option="base_filters",
              tiny={"base_filters": 4}),
)  # fmt: skip
def build_residual_unet(
    *, spatial_dims: int, in_channels: int, out_channels: int, base_filters: int = 32, **_: Any
) -> nn.Module:
    """MONAI BasicUNet (features base x (1, 1, 2, 4, 8, 1)) with a global residual and batch norms (it
    trains on crops and enhances whole slices)."""
    return ResidualUNet(spatial_dims, in_channels, out_channels, base_filters, norm="batch")


@register_model(
    "dncnn",
    ModelInfo(family="enhancement", output="logit_map", min_size=8, width_option="features",
              tiny={"features": 8, "depth": 4}),
)  # fmt: skip
def build_dncnn(
    *, spatial_dims: int, in_channels: int, out_channels: int, features: int = 64, depth: int = 17, **_: Any
) -> nn.Module:
    """DnCNN-S (17 layers of 64 features by default)."""
    return DnCNN(spatial_dims, in_channels, out_channels, features, depth)


@register_model(
    "redcnn",
    ModelInfo(family="enhancement", output="logit_map", min_size=8, width_option="features",
              tiny={"features": 8}),
)  # fmt: skip
def build_redcnn(
    *, spatial_dims: int, in_channels: int, out_channels: int, features: int = 96, **_: Any
) -> nn.Module:
    """RED-CNN (96 features, 5x5 kernels)."""
    return REDCNN(spatial_dims, in_channels, out_channels, features)


@register_model(
    "kspace_cascade",
    ModelInfo(family="enhancement", output="logit_map", dims=(2,), min_size=8, width_option="base_filters",
              tiny={"base_filters": 4, "cascades": 2}),
)  # fmt: skip
def build_kspace_cascade(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    base_filters: int = 16,
    cascades: int = 4,
    **_: Any,
) -> nn.Module:
    """An unrolled cascade of residual U-Nets with hard data consistency (2D Cartesian k-space)."""
    _check_2d("kspace_cascade", spatial_dims, (2,))
    return KSpaceCascade(in_channels, out_channels, cascades, base_filters)


__all__ = [
    "DnCNN",
    "DataConsistency",
    "KSpaceCascade",
    "REDCNN",
    "ResidualUNet",
    "centred_dft",
    "fft2c_real",
    "ifft2c_real",
]
