"""Degradations for the ``enhance`` task family: undersampled MRI k-space, low-dose CT, Rician and Gaussian
noise, and super-resolution by downsampling. Torch-free (numpy, scipy, scikit-image).

A degradation is written as text in a config, parsed once, recorded in ``plan.json`` by :meth:`to_dict` and
applied to clean images with an explicit random generator, so that a seed reproduces every degraded image:

==========================================  =============================================================
text                                        what it does
==========================================  =============================================================
``kspace:4x``, ``kspace:8x``                Cartesian undersampling, 1/N of the phase-encoding lines kept,
                                            a fully sampled centre (0.08 at 4x, 0.04 at 8x: 0.32/N)
``kspace:4x,pattern=random,center=0.08``    options: ``pattern=equispaced|random``, ``center=<fraction>``,
                                            ``axis=-1|-2`` (the phase-encoding axis, last by default)
``lowdose-ct:0.25``                         Poisson noise at a quarter of the full-dose photon count, FBP;
                                            options ``i0=1e5``, ``angles=180``, ``input=mu|hu``,
                                            ``spacing=image|<mm>`` (the pixel size, with ``input=hu``)
``rician:0.05``, ``gaussian:0.05``          noise with sigma a fraction of the image's intensity range
``sr:2x``, ``sr:4x``                        block-average downsampling in-plane (the last two axes), or
                                            along one axis with ``axis=<k>``; ``order=3`` for the baseline
==========================================  =============================================================

Conventions:

- k-space is the orthonormal, centred 2D FFT of the last two axes (:func:`fft2c`): DC sits at index
  ``n // 2``. One mask of shape (H, W) is drawn per call and shared by every slice of a stack.
  Lines are whole rows or columns: ``axis=-1`` keeps columns (fastMRI's convention).
- The centre rule: ``0 < center < 1/N`` (the centre alone must not fill the line budget), and an image
  needs at least one line outside the centre: ``round(n / N) > max(1, round(n * center))``.
  The mask keeps exactly ``round(n / N)`` lines (fastMRI's random pattern only keeps that many on average).
- Noise sigma is relative: ``sigma * (max - min)`` of the clean image; a constant image is a DataError.
- Low-dose CT takes linear attenuation per pixel (mu in 1/mm times the pixel size in mm), non-negative;
  with ``input=hu`` the image is in Hounsfield units, converted with ``mu = MU_WATER * (1 + HU / 1000)``
  and the reconstructions come back in HU. The pixel size turns HU into attenuation per pixel:
  ``spacing=image`` (the default) takes each image's own in-plane spacing from its header, so that a body
  has the same line integrals, and the same dose the same noise, at 0.7 mm as at 3 mm; ``spacing=<mm>``
  fixes it (for arrays without a header). ``i0`` is the full-dose count per detector bin (default 1e5),
  the dose fraction scales it; zero counts are clipped to 1 before the log. The reference is the FBP of
  the noiseless sinogram (what an infinite dose would give), both with the ramp filter.

Example::

    deg = parse_degradation("kspace:4x")
    out = deg.apply(image, np.random.default_rng(0))   # out.image, out.kspace, out.mask
    deg.to_dict()   # {'kind': 'kspace', 'spec': 'kspace:4x,pattern=equispaced,center=0.08,axis=-1', ...}
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np
from scipy import ndimage

from medsight.errors import ConfigError, DataError

MU_WATER = 0.0192
"""Linear attenuation of water in 1/mm at about 70 keV, used by ``input=hu``."""

ACCEPTED_FORMS = (
    "kspace:<N>x[,pattern=equispaced|random][,center=<fraction>][,axis=-1|-2]",
    "lowdose-ct:<dose in (0, 1]>[,i0=<photons>][,angles=<n>][,input=mu|hu][,spacing=image|<mm>]",
    "rician:<sigma>",
    "gaussian:<sigma>",
    "sr:<N>x[,axis=<k>][,order=<0-5>]",
)

_TEXT_RE = re.compile(r"^\s*(?P<kind>[a-z-]+)\s*:\s*(?P<value>[^,\s]+)\s*(?P<opts>(?:,[^,]*)*)$", re.I)
_FACTOR_RE = re.compile(r"^(?P<n>[0-9]+)x$", re.I)


@dataclass(frozen=True)
class DegradedImage:
    """The result of :meth:`Degradation.apply`.

    Attributes:
        image: the degraded image, the input's shape (for ``sr``: the baseline upsampled back).
        low_res: ``sr`` only: the downsampled array.
        kspace: ``kspace`` only: the masked, centred k-space (complex, the input's shape).
        mask: ``kspace`` only: the boolean sampling mask, shape (H, W), broadcast over a stack.
        reference: ``lowdose-ct`` only: the full-dose (noiseless) FBP reconstruction.
        sinogram: ``lowdose-ct`` only: the noisy sinogram (..., detectors, angles), line integrals.
    """

    image: np.ndarray
    low_res: np.ndarray | None = None
    kspace: np.ndarray | None = None
    mask: np.ndarray | None = None
    reference: np.ndarray | None = None
    sinogram: np.ndarray | None = None


@dataclass(frozen=True)
class Degradation:
    """A parsed degradation: its exact settings and how to apply it. Build one with
    :func:`parse_degradation`; the subclasses validate their fields on construction."""

    kind: ClassVar[str] = ""

    @property
    def spec(self) -> str:
        """The canonical text, every default written out; ``parse_degradation(d.spec) == d``."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """What ``plan.json`` records: kind, canonical text and every setting."""
        return {"kind": self.kind, "spec": self.spec, **asdict(self)}

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> DegradedImage:
        """Degrade a clean image; every random draw comes from ``rng``."""
        raise NotImplementedError

    def at_pixel_size(self, mm: float | None) -> Degradation:
        """This degradation for images of ``mm`` in-plane pixels (None: unknown); only a degradation that
        depends on the physical pixel size (low-dose CT with ``spacing=image``) changes."""
        return self


# ---------------------------------------------------------------------------------------------- k-space


def fft2c(image: np.ndarray) -> np.ndarray:
    """Orthonormal centred 2D FFT of the last two axes (DC at index ``n // 2``).

    Example::

        k = fft2c(np.ones((4, 4)))   # k[2, 2] == 4, zero elsewhere
    """
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image, axes=axes), norm="ortho"), axes=axes)


def ifft2c(kspace: np.ndarray) -> np.ndarray:
    """Inverse of :func:`fft2c` (complex)."""
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=axes), norm="ortho"), axes=axes)


def zero_filled(kspace: np.ndarray, *, magnitude: bool = True) -> np.ndarray:
    """The zero-filled reconstruction of (masked) centred k-space (..., H, W).

    Args:
        kspace: centred k-space, unsampled positions zero.
        magnitude: return ``abs`` (the default) or the complex image.

    Raises:
        DataError: fewer than two dimensions, or NaN/Inf.

    Example::

        zero_filled(fft2c(image))   # == abs(image) up to rounding
    """
    kspace = _check_kspace("kspace", kspace)
    image = ifft2c(kspace)
    return np.abs(image) if magnitude else image


def data_consistency(kspace_pred: np.ndarray, kspace_acquired: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Put the acquired samples back: ``kspace_acquired`` where ``mask``, ``kspace_pred`` elsewhere.

    The acquired values are copied bit for bit (``np.where``), the property unrolled networks rely on.

    Args:
        kspace_pred: k-space predicted by a network (..., H, W).
        kspace_acquired: the measured, masked k-space, same shape.
        mask: boolean (or 0/1) sampling mask broadcastable to that shape, e.g. (H, W).

    Raises:
        DataError: shapes differ or do not broadcast, fewer than two dimensions, a mask not boolean.

    Example::

        k = data_consistency(fft2c(net_output), out.kspace, out.mask)
    """
    pred = _check_kspace("kspace_pred", kspace_pred)
    acquired = _check_kspace("kspace_acquired", kspace_acquired)
    if pred.shape != acquired.shape:
        raise DataError(f"kspace_pred: shape {pred.shape} does not match kspace_acquired {acquired.shape}")
    return np.where(_check_mask(mask, acquired.shape), acquired, pred)


def undersample(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """k-space of an image (..., H, W) masked by ``mask``, and its zero-filled magnitude.

    Example::

        kspace, zf = undersample(image, np.ones(image.shape[-2:], bool))   # zf == abs(image)
    """
    image = _check_image("image", image, allow_complex=True, min_ndim=2)
    mask = _check_mask(mask, image.shape)
    kspace = np.where(mask, fft2c(image), 0)
    return kspace, np.abs(ifft2c(kspace))


def line_mask(
    n_lines: int, acceleration: int, center_fraction: float, pattern: str, rng: np.random.Generator
) -> np.ndarray:
    """A 1D boolean mask over ``n_lines`` phase-encoding lines: the centre block and evenly spaced (with a
    random offset) or random lines outside it, ``round(n_lines / acceleration)`` in all.

    Raises:
        DataError: too few lines for the acceleration and centre (none would be left outside the centre).

    Example::

        line_mask(256, 4, 0.08, "equispaced", np.random.default_rng(0)).sum()   # 64
    """
    n_total = round(n_lines / acceleration)
    n_center = max(1, round(n_lines * center_fraction))
    if n_total <= n_center:
        raise DataError(
            f"image: {n_lines} phase-encoding lines are too few for {acceleration}x with centre "
            f"{center_fraction} ({n_total} lines kept, {n_center} of them in the centre); "
            f"need round(n / {acceleration}) > max(1, round(n * {center_fraction}))"
        )
    mask = np.zeros(n_lines, dtype=bool)
    start = (n_lines - n_center + 1) // 2
    mask[start : start + n_center] = True
    outer = np.flatnonzero(~mask)
    n_outer = n_total - n_center
    if pattern == "random":
        mask[rng.choice(outer, size=n_outer, replace=False)] = True
    else:
        picks = np.floor((np.arange(n_outer) + rng.random()) * len(outer) / n_outer).astype(int)
        mask[outer[picks]] = True
    return mask


@dataclass(frozen=True)
class KSpaceUndersampling(Degradation):
    """Cartesian k-space undersampling (``kspace:4x``): see the module's conventions.

    Example::

        out = KSpaceUndersampling(4).apply(image, np.random.default_rng(0))
    """

    kind: ClassVar[str] = "kspace"
    acceleration: int
    center_fraction: float | None = None
    pattern: str = "equispaced"
    axis: int = -1

    def __post_init__(self) -> None:
        _require(_is_int(self.acceleration) and self.acceleration >= 2, "acceleration", "an integer >= 2")
        if self.center_fraction is None:
            object.__setattr__(self, "center_fraction", 0.32 / self.acceleration)
        c = self.center_fraction
        _require(
            _is_real(c) and 0 < c < 1 / self.acceleration, "center", f"0 < center < 1/{self.acceleration}"
        )
        _require(self.pattern in ("equispaced", "random"), "pattern", "'equispaced' or 'random'")
        _require(self.axis in (-1, -2), "axis", "-1 or -2 (the phase-encoding axis of the image plane)")

    @property
    def spec(self) -> str:
        return (
            f"kspace:{self.acceleration}x,pattern={self.pattern},center={_fmt(self.center_fraction)},"
            f"axis={self.axis}"
        )

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> DegradedImage:
        image = _check_image("image", image, allow_complex=True, min_ndim=2)
        _check_rng(rng)
        lines = line_mask(image.shape[self.axis], self.acceleration, self.center_fraction, self.pattern, rng)
        plane = image.shape[-2:]
        mask = np.broadcast_to(lines if self.axis == -1 else lines[:, None], plane).copy()
        kspace, zf = undersample(image, mask)
        return DegradedImage(image=zf, kspace=kspace, mask=mask)


# -------------------------------------------------------------------------------------------- low-dose CT


def hu_to_attenuation(hu: np.ndarray, spacing: float = 1.0, mu_water: float = MU_WATER) -> np.ndarray:
    """Hounsfield units to linear attenuation per pixel, ``mu_water * (1 + HU / 1000) * spacing``, >= 0.

    Example::

        hu_to_attenuation(np.array([-1000.0, 0.0]))   # [0.0, 0.0192]
    """
    return np.clip(mu_water * (1.0 + np.asarray(hu, dtype=np.float64) / 1000.0), 0.0, None) * spacing


def attenuation_to_hu(mu: np.ndarray, spacing: float = 1.0, mu_water: float = MU_WATER) -> np.ndarray:
    """Inverse of :func:`hu_to_attenuation` (without its clipping)."""
    return (np.asarray(mu, dtype=np.float64) / spacing / mu_water - 1.0) * 1000.0


def _fbp(sinogram: np.ndarray, theta: np.ndarray, size: int) -> np.ndarray:
    from skimage.transform import iradon

    return iradon(sinogram, theta=theta, filter_name="ramp", circle=False, output_size=size)


def lowdose_slice(
    mu: np.ndarray, dose: float, i0: float, theta: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Low-dose and full-dose (noiseless) FBP of one 2D attenuation slice, and the noisy sinogram.

    The slice is zero-padded to a centred square for the projections and cropped back.

    Example::

        low, ref, sino = lowdose_slice(mu, 0.25, 1e5, np.arange(180.0), np.random.default_rng(0))
    """
    from skimage.transform import radon

    h, w = mu.shape
    n = max(h, w)
    top, left = (n - h) // 2, (n - w) // 2
    square = np.zeros((n, n))
    square[top : top + h, left : left + w] = mu
    clean = radon(square, theta=theta, circle=False)
    counts = rng.poisson(i0 * dose * np.exp(-clean))
    noisy = -np.log(np.maximum(counts, 1) / (i0 * dose))
    crop = (slice(top, top + h), slice(left, left + w))
    return _fbp(noisy, theta, n)[crop], _fbp(clean, theta, n)[crop], noisy


@dataclass(frozen=True)
class LowDoseCT(Degradation):
    """Low-dose CT (``lowdose-ct:0.25``): Poisson noise on the transmitted counts, FBP.

    Example::

        out = LowDoseCT(0.25).apply(mu, np.random.default_rng(0))   # out.image, out.reference
    """

    kind: ClassVar[str] = "lowdose-ct"
    dose: float
    i0: float = 1e5
    angles: int = 180
    input: str = "mu"
    spacing: float | str = "image"

    def __post_init__(self) -> None:
        _require(_is_real(self.dose) and 0 < self.dose <= 1, "dose", "a fraction in (0, 1]")
        _require(_is_real(self.i0) and 0 < self.i0 < math.inf, "i0", "a photon count > 0")
        _require(_is_int(self.angles) and self.angles >= 1, "angles", "an integer >= 1")
        _require(self.input in ("mu", "hu"), "input", "'mu' (attenuation per pixel) or 'hu'")
        _require(
            self.spacing == "image" or (_is_real(self.spacing) and 0 < self.spacing < math.inf),
            "spacing",
            "'image' (each image's own pixel size) or a pixel size in mm > 0",
        )

    @property
    def spec(self) -> str:
        return (
            f"lowdose-ct:{_fmt(self.dose)},i0={_fmt(self.i0)},angles={self.angles},input={self.input},"
            f"spacing={self.spacing if self.spacing == 'image' else _fmt(self.spacing)}"
        )

    def at_pixel_size(self, mm: float | None) -> LowDoseCT:
        if self.spacing != "image" or mm is None:
            return self
        return replace(self, spacing=float(mm))

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> DegradedImage:
        image = _check_image("image", image, allow_complex=False, min_ndim=2)
        _check_rng(rng)
        if self.input == "hu" and self.spacing == "image":
            raise DataError(
                "image: lowdose-ct with input=hu and spacing=image needs the image's pixel size, and this "
                "array has none: read it from a file with a header, or give spacing=<mm>"
            )
        mu = hu_to_attenuation(image, self.spacing) if self.input == "hu" else image.astype(np.float64)
        if self.input == "mu" and mu.min() < 0:
            raise DataError(
                f"image: linear attenuation must be >= 0, found min {mu.min():.4g} "
                "(Hounsfield units? use input=hu)"
            )
        theta = np.linspace(0.0, 180.0, self.angles, endpoint=False)
        slices = [lowdose_slice(s, self.dose, self.i0, theta, rng) for s in mu.reshape(-1, *mu.shape[-2:])]
        low, ref, sino = (np.stack([s[i] for s in slices]) for i in range(3))
        low, ref = low.reshape(mu.shape), ref.reshape(mu.shape)
        if self.input == "hu":
            low, ref = attenuation_to_hu(low, self.spacing), attenuation_to_hu(ref, self.spacing)
        return DegradedImage(image=low, reference=ref, sinogram=sino.reshape(*mu.shape[:-2], *sino.shape[1:]))


# -------------------------------------------------------------------------------------------------- noise


def _absolute_sigma(image: np.ndarray, sigma: float) -> float:
    span = float(image.max() - image.min())
    if span == 0:
        raise DataError("image: intensity range is 0 (a constant image); a relative sigma needs a range")
    return sigma * span


@dataclass(frozen=True)
class _Noise(Degradation):
    """Noise of ``sigma``, a fraction of the clean image's intensity range (``<kind>:<sigma>``)."""

    sigma: float

    def __post_init__(self) -> None:
        _require(_is_real(self.sigma) and 0 < self.sigma < math.inf, "sigma", "a fraction of the range > 0")

    @property
    def spec(self) -> str:
        return f"{self.kind}:{_fmt(self.sigma)}"


@dataclass(frozen=True)
class RicianNoise(_Noise):
    """Rician noise (``rician:0.05``): ``sqrt((x + n1)^2 + n2^2)``, n1, n2 ~ N(0, sigma * range).

    Example::

        noisy = RicianNoise(0.05).apply(image, np.random.default_rng(0)).image
    """

    kind: ClassVar[str] = "rician"

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> DegradedImage:
        image = _check_image("image", image, allow_complex=False, min_ndim=1)
        _check_rng(rng)
        s = _absolute_sigma(image, self.sigma)
        x = image.astype(_float_dtype(image))
        n1, n2 = (rng.normal(0.0, s, size=x.shape).astype(x.dtype) for _ in range(2))
        return DegradedImage(image=np.sqrt((x + n1) ** 2 + n2**2))


@dataclass(frozen=True)
class GaussianNoise(_Noise):
    """Additive Gaussian noise (``gaussian:0.05``): ``x + n``, n ~ N(0, sigma * range); complex images get
    independent noise of that sigma on the real and imaginary parts (range of the magnitude).

    Example::

        noisy = GaussianNoise(0.05).apply(image, np.random.default_rng(0)).image
    """

    kind: ClassVar[str] = "gaussian"

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> DegradedImage:
        image = _check_image("image", image, allow_complex=True, min_ndim=1)
        _check_rng(rng)
        if np.iscomplexobj(image):
            s = _absolute_sigma(np.abs(image), self.sigma)
            noise = rng.normal(0.0, s, size=image.shape) + 1j * rng.normal(0.0, s, size=image.shape)
            return DegradedImage(image=(image + noise).astype(image.dtype))
        x = image.astype(_float_dtype(image))
        noise = rng.normal(0.0, _absolute_sigma(image, self.sigma), size=x.shape)
        return DegradedImage(image=(x + noise).astype(x.dtype))


# ------------------------------------------------------------------------------------------ super-resolution


def _sr_axes(ndim: int, axis: int | None) -> tuple[int, ...]:
    if axis is None:
        if ndim < 2:
            raise DataError(f"image: in-plane downsampling needs >= 2 dimensions, got {ndim}")
        return (ndim - 2, ndim - 1)
    if not -ndim <= axis < ndim:
        raise DataError(f"image: axis {axis} is out of range for {ndim} dimensions")
    return (axis % ndim,)


def downsample(image: np.ndarray, factor: int, axes: tuple[int, ...] = (-2, -1)) -> np.ndarray:
    """Block averages of ``factor`` samples along ``axes`` (a box anti-aliasing filter); a length that is not
    a multiple of ``factor`` is padded by repeating the edge, so the output has ``ceil(n / factor)``.

    Example::

        downsample(np.arange(16.0).reshape(4, 4), 2)   # [[2.5, 4.5], [10.5, 12.5]]
    """
    axes = tuple(a % image.ndim for a in axes)
    pad = [(0, -n % factor if i in axes else 0) for i, n in enumerate(image.shape)]
    x = np.pad(image, pad, mode="edge")
    shape: list[int] = []
    for i, n in enumerate(x.shape):
        shape += [n // factor, factor] if i in axes else [n]
    reduce = tuple(i + 1 + sum(1 for a in axes if a < i) for i in axes)
    return x.reshape(shape).mean(axis=reduce)


def upsample_baseline(
    low: np.ndarray,
    factor: int,
    order: int = 3,
    *,
    axes: tuple[int, ...] = (-2, -1),
    shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """The interpolation baseline: B-spline of ``order`` (3: bicubic) by ``factor`` along ``axes``, on the
    pixel-area grid of :func:`downsample` (``grid_mode``), cropped to ``shape`` when given.

    Example::

        up = upsample_baseline(downsample(image, 2), 2, shape=image.shape)
    """
    axes = tuple(a % low.ndim for a in axes)
    zoom = [float(factor) if i in axes else 1.0 for i in range(low.ndim)]
    up = ndimage.zoom(low, zoom, order=order, mode="reflect", grid_mode=True)
    if shape is not None:
        up = up[tuple(slice(0, n) for n in shape)]
    return up


@dataclass(frozen=True)
class SuperResolution(Degradation):
    """Downsampling for super-resolution (``sr:2x``, ``sr:4x,axis=0`` for thick slices along axis 0).

    ``image`` is the baseline upsampled back to the input's shape, ``low_res`` the block-averaged array.

    Example::

        out = SuperResolution(2).apply(image, np.random.default_rng(0))   # out.low_res, out.image
    """

    kind: ClassVar[str] = "sr"
    factor: int
    axis: int | None = None
    order: int = 3

    def __post_init__(self) -> None:
        _require(_is_int(self.factor) and self.factor >= 2, "factor", "an integer >= 2")
        _require(self.axis is None or _is_int(self.axis), "axis", "an integer axis")
        _require(_is_int(self.order) and 0 <= self.order <= 5, "order", "a spline order 0-5")

    @property
    def spec(self) -> str:
        axis = "" if self.axis is None else f",axis={self.axis}"
        return f"sr:{self.factor}x{axis},order={self.order}"

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> DegradedImage:
        image = _check_image("image", image, allow_complex=False, min_ndim=1)
        _check_rng(rng)
        axes = _sr_axes(image.ndim, self.axis)
        for a in axes:
            if image.shape[a] < self.factor:
                raise DataError(
                    f"image: axis {a} has {image.shape[a]} samples, fewer than factor {self.factor}"
                )
        low = downsample(image.astype(_float_dtype(image)), self.factor, axes)
        up = upsample_baseline(low, self.factor, self.order, axes=axes, shape=image.shape)
        return DegradedImage(image=up, low_res=low)


# ------------------------------------------------------------------------------------------------ parsing

_KINDS: dict[str, type[Degradation]] = {
    c.kind: c for c in (KSpaceUndersampling, LowDoseCT, RicianNoise, GaussianNoise, SuperResolution)
}
_OPTION_FIELDS = {"center_fraction": "center"}  # field -> option key


def _bad(text: str, why: str = "") -> ConfigError:
    reason = f" ({why})" if why else ""
    return ConfigError(
        f"degradation: cannot read {text!r}{reason}; expected one of: " + "; ".join(ACCEPTED_FORMS)
    )


def _options(text: str, raw: str, cls: type[Degradation]) -> dict[str, str]:
    allowed = {_OPTION_FIELDS.get(f.name, f.name): f.name for f in fields(cls)}
    allowed.pop(next(iter(allowed)))  # the first field is the value before the commas
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in raw.split(",")[1:])):
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or key not in allowed or allowed[key] in out:
            accepted = ", ".join(allowed) or "none"
            raise _bad(text, f"option {item!r}: unknown or repeated, {cls.kind} accepts {accepted}")
        out[allowed[key]] = value
    return out


def _convert(text: str, name: str, value: str, cls: type[Degradation]) -> Any:
    kind = {f.name: f.type for f in fields(cls)}[name]
    try:
        if "int" in str(kind):
            match = _FACTOR_RE.match(value)
            return int(match["n"]) if match and name in ("acceleration", "factor") else int(value)
        if "float" in str(kind):
            return value.lower() if "str" in str(kind) and value.lower() == "image" else float(value)
    except (TypeError, ValueError) as exc:
        raise _bad(text, f"{name}={value!r} is not a number") from exc
    return value.lower()


def parse_degradation(text: str) -> Degradation:
    """Parse a degradation such as ``"kspace:4x"``, ``"lowdose-ct:0.25"``, ``"rician:0.05"``, ``"sr:2x"``.

    Args:
        text: one of :data:`ACCEPTED_FORMS` (case-insensitive, spaces around separators allowed).

    Returns:
        The frozen :class:`Degradation`, every default filled in (see ``to_dict()``).

    Raises:
        ConfigError: the text is none of the accepted forms (the message lists them), an option is unknown
            or repeated, or a value is out of range (e.g. a centre fraction >= 1/acceleration).

    Example::

        parse_degradation("kspace:8x,pattern=random").to_dict()["center_fraction"]   # 0.04
    """
    match = _TEXT_RE.match(text) if isinstance(text, str) else None
    if match is None or match["kind"].lower() not in _KINDS:
        raise _bad(str(text))
    cls = _KINDS[match["kind"].lower()]
    first = fields(cls)[0].name
    if first in ("acceleration", "factor") and not _FACTOR_RE.match(match["value"]):
        raise _bad(text, f"{first} must be written like 4x")
    values = {first: match["value"], **_options(text, match["opts"], cls)}
    kwargs = {k: _convert(text, k, v, cls) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise _bad(text, str(exc)) from exc


# ------------------------------------------------------------------------------------------------ checks


def _require(ok: bool, name: str, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{name}: expected {expected}")


def _is_int(x: object) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _is_real(x: object) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool) and x == x


def _fmt(x: float | None) -> str:
    short = format(x, "g")
    return short if float(short) == x else repr(float(x))


def _float_dtype(image: np.ndarray) -> type[np.floating]:
    return image.dtype.type if image.dtype in (np.float32, np.float64) else np.float64


def _check_rng(rng: object) -> None:
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")


def _check_image(name: str, image: np.ndarray, *, allow_complex: bool, min_ndim: int) -> np.ndarray:
    arr = np.asarray(image)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if np.iscomplexobj(arr) and not allow_complex:
        raise DataError(f"{name}: expected a real (magnitude) image, got complex dtype {arr.dtype}")
    if arr.ndim < min_ndim:
        raise DataError(f"{name}: expected at least {min_ndim} dimensions, got shape {arr.shape}")
    if arr.size == 0:
        raise DataError(f"{name}: empty array of shape {arr.shape}")
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise DataError(f"{name}: {bad} NaN/Inf value(s) in an array of shape {arr.shape}")
    return arr


def _check_kspace(name: str, kspace: np.ndarray) -> np.ndarray:
    arr = np.asarray(kspace)
    if arr.ndim < 2:
        raise DataError(
            f"{name}: expected k-space of shape (..., H, W), got {arr.ndim} dimension(s) {arr.shape}"
        )
    return _check_image(name, arr, allow_complex=True, min_ndim=2)


def _check_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    m = np.asarray(mask)
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise DataError(f"mask: expected a boolean (or 0/1) mask, got dtype {m.dtype} with other values")
        m = m.astype(bool)
    try:
        fits = np.broadcast_shapes(m.shape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise DataError(f"mask: shape {m.shape} does not broadcast to k-space {shape}")
    return m
