"""Natural shifts: what another scanner, camera or protocol does to an image, at graded severities.

Each shift acts on a batch of unit-space images ``u`` (B, C, *spatial), intensities scaled to [0, 1]
(:class:`~medsight.robustness.space.InputSpace`), and returns the shifted batch; a geometric shift
(``scale``) also moves dense targets (a target with the image's spatial shape: label maps, reference
images) with the image, nearest-neighbour for integer targets. Severities 1..3 are fixed parameters, so
two runs (and two models) meet the same shifted images; noise is seeded.

========== ====================================================== =======================
shift      what it does                                           severity 1 / 2 / 3
========== ====================================================== =======================
scale      zoom about the centre, same grid (a higher-resolution   1.25x / 1.5x / 1.75x
           camera seeing the same anatomy)
resolution blur by down- then up-sampling (a coarser acquisition)  1.5x / 2x / 3x
gamma      u ** gamma                                              1.4 / 1.8 / 2.5
contrast   towards the image mean                                  x0.75 / x0.5 / x0.3
colour     per-channel gains (brightness for grey images)          +-8% / 16% / 25%
blur       Gaussian, sigma in pixels                               0.7 / 1.2 / 2.0
noise      additive Gaussian, sd in unit intensity                 0.02 / 0.05 / 0.10
jpeg       JPEG compression of each 2D image (quality)             50 / 25 / 10
bias-field smooth multiplicative field exp(a * (x + y) / 2)        a = 0.3 / 0.6 / 0.9
========== ====================================================== =======================
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from medsight.errors import ConfigError

SEVERITIES = (1, 2, 3)
PARAMETERS: dict[str, tuple[float, float, float]] = {
    "scale": (1.25, 1.5, 1.75),
    "resolution": (1.5, 2.0, 3.0),
    "gamma": (1.4, 1.8, 2.5),
    "contrast": (0.75, 0.5, 0.3),
    "colour": (0.08, 0.16, 0.25),
    "blur": (0.7, 1.2, 2.0),
    "noise": (0.02, 0.05, 0.10),
    "jpeg": (50, 25, 10),
    "bias-field": (0.3, 0.6, 0.9),
}
SHIFT_NAMES = tuple(PARAMETERS)
GEOMETRIC = ("scale",)  # shifts that move the target with the image

ShiftFn = Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]


def parse_shifts(text: str) -> list[str]:
    """``"all"`` or a comma-separated list of shift names -> the names (ConfigError naming the known ones)."""
    names = list(SHIFT_NAMES) if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in PARAMETERS]
    if unknown or not names:
        raise ConfigError(
            f"--shifts: unknown shift(s) {unknown or text!r}; known: all, {', '.join(SHIFT_NAMES)}"
        )
    return names


def parameter(name: str, severity: int) -> float:
    """The parameter of shift ``name`` at ``severity`` (1..3)."""
    if severity not in SEVERITIES:
        raise ConfigError(f"shift severity: expected one of {SEVERITIES}, got {severity}")
    return PARAMETERS[name][severity - 1]


def apply_shift(
    name: str, u: torch.Tensor, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``u`` (B, C, *spatial) in [0, 1] under shift ``name`` at ``severity``, clipped to [0, 1]."""
    fn = _SHIFTS[name]
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    return fn(u.float(), parameter(name, severity), generator).clamp(0, 1)


def move_target(name: str, y: torch.Tensor, spatial: tuple[int, ...], severity: int) -> torch.Tensor:
    """The target of a shifted batch: a dense target (spatial shape ``spatial``) zoomed with a geometric
    shift; any other target unchanged."""
    if name not in GEOMETRIC or tuple(y.shape[-len(spatial) :]) != spatial or y.ndim < len(spatial) + 1:
        return y
    factor = parameter(name, severity)
    if y.is_floating_point():
        return _zoom(y.float().reshape(-1, 1, *spatial), factor, "bilinear").reshape(y.shape).to(y.dtype)
    moved = _zoom(y.reshape(-1, 1, *spatial).float(), factor, "nearest")
    return moved.reshape(y.shape).round().to(y.dtype)


# ----------------------------------------------------------------------------------------- shifts
def _zoom(u: torch.Tensor, factor: float, mode: str = "bilinear") -> torch.Tensor:
    """Zoom about the centre by ``factor`` on the same grid (the central 1/factor of the field of view)."""
    spatial = u.shape[2:]
    crop = [max(1, round(s / factor)) for s in spatial]
    starts = [(s - c) // 2 for s, c in zip(spatial, crop, strict=True)]
    region = u[(slice(None), slice(None), *(slice(a, a + c) for a, c in zip(starts, crop, strict=True)))]
    return _resize(region, tuple(spatial), mode)


def _resize(u: torch.Tensor, size: tuple[int, ...], mode: str) -> torch.Tensor:
    if mode != "nearest":
        mode = "bilinear" if len(size) == 2 else "trilinear"
        return F.interpolate(u, size=size, mode=mode, align_corners=False)
    return F.interpolate(u, size=size, mode="nearest")


def _scale(u: torch.Tensor, factor: float, _: torch.Generator) -> torch.Tensor:
    return _zoom(u, factor)


def _resolution(u: torch.Tensor, factor: float, _: torch.Generator) -> torch.Tensor:
    spatial = tuple(u.shape[2:])
    coarse = tuple(max(1, round(s / factor)) for s in spatial)
    return _resize(_resize(u, coarse, "linear"), spatial, "linear")


def _gamma(u: torch.Tensor, gamma: float, _: torch.Generator) -> torch.Tensor:
    return u.clamp(0, 1) ** gamma


def _contrast(u: torch.Tensor, factor: float, _: torch.Generator) -> torch.Tensor:
    mean = u.mean(dim=tuple(range(1, u.ndim)), keepdim=True)
    return mean + (u - mean) * factor


def _colour(u: torch.Tensor, amount: float, _: torch.Generator) -> torch.Tensor:
    channels = u.shape[1]
    pattern = (
        torch.tensor([1.0, -0.5, -1.0] * (channels // 3 + 1))[:channels] if channels > 1 else torch.ones(1)
    )
    gains = 1 + amount * pattern
    return u * gains.reshape(1, channels, *([1] * (u.ndim - 2)))


def _blur(u: torch.Tensor, sigma: float, _: torch.Generator) -> torch.Tensor:
    from monai.networks.layers import GaussianFilter

    spatial_dims = u.ndim - 2
    return GaussianFilter(spatial_dims, sigma)(u)


def _noise(u: torch.Tensor, sd: float, generator: torch.Generator) -> torch.Tensor:
    return u + sd * torch.randn(u.shape, generator=generator)


def _jpeg(u: torch.Tensor, quality: float, _: torch.Generator) -> torch.Tensor:
    from PIL import Image as PILImage

    if u.ndim != 4 or u.shape[1] not in (1, 3):
        raise ConfigError(
            f"shift 'jpeg': needs 2D images with 1 or 3 channels, got a batch of shape {tuple(u.shape)}"
        )
    out = []
    for image in u.clamp(0, 1).numpy():
        pixels = np.round(np.moveaxis(image, 0, -1) * 255).astype(np.uint8)
        buffer = io.BytesIO()
        PILImage.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(
            buffer, format="JPEG", quality=int(quality)
        )
        decoded = np.asarray(PILImage.open(io.BytesIO(buffer.getvalue())), dtype=np.float32) / 255
        out.append(decoded[None] if decoded.ndim == 2 else np.moveaxis(decoded, -1, 0))
    return torch.from_numpy(np.stack(out))


def _bias_field(u: torch.Tensor, strength: float, _: torch.Generator) -> torch.Tensor:
    axes = [torch.linspace(-1, 1, s) for s in u.shape[2:]]
    grids = torch.meshgrid(*axes, indexing="ij")
    ramp = sum(grids[:2]) / 2
    return u * torch.exp(strength * ramp)


_SHIFTS: dict[str, ShiftFn] = {
    "scale": _scale,
    "resolution": _resolution,
    "gamma": _gamma,
    "contrast": _contrast,
    "colour": _colour,
    "blur": _blur,
    "noise": _noise,
    "jpeg": _jpeg,
    "bias-field": _bias_field,
}
