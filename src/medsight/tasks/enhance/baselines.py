"""The classical methods every enhance evaluation runs beside the network, on the same degraded slices.

- k-space: ``zero_filled`` (the inverse FFT of the acquired samples) and ``tv_cs``, total-variation
  compressed sensing by proximal gradient (ISTA with scikit-image's Chambolle TV denoiser as the prox,
  on the real and imaginary parts);
- low-dose CT and noise: the input itself (``fbp`` for CT, ``noisy`` for noise), ``tv`` (Chambolle),
  ``nlm`` (non-local means, sigma estimated from the image) and ``wavelet`` (BayesShrink);
- super-resolution: ``bspline`` (cubic B-spline, the degradation's own upsampling), ``linear`` and
  ``bicubic`` (Keys' cubic convolution, PyTorch's ``bicubic``) from the low-resolution image.

A method's weight is relative to the image's intensity scale (its 99th percentile), so one value fits
images of any scale; :func:`tune` picks it on validation slices.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medsight.data.degradations import fft2c, ifft2c, upsample_baseline
from medsight.tasks.enhance.slices import Sample

TV_CS_ITERATIONS = 30
WEIGHT_GRID = {"tv_cs": (0.002, 0.005, 0.01, 0.02), "tv": (0.02, 0.05, 0.1, 0.2), "nlm": (0.6, 0.8, 1.2)}
DEFAULTS = {"tv_cs": 0.005, "tv": 0.05, "nlm": 0.8}

Baseline = Callable[[Sample, dict[str, float]], np.ndarray]


def _scale(x: np.ndarray) -> float:
    s = float(np.percentile(np.abs(x), 99))
    return s if s > 0 else 1.0


def zero_filled(sample: Sample, params: dict[str, float]) -> np.ndarray:
    assert sample.kspace is not None
    return np.abs(ifft2c(sample.kspace)).astype(np.float32)


def tv_cs(sample: Sample, params: dict[str, float]) -> np.ndarray:
    """min_x 1/2 ||M F x - y||^2 + w TV(x) by ISTA (step 1: F is orthonormal and M a projection)."""
    from skimage.restoration import denoise_tv_chambolle

    assert sample.kspace is not None and sample.mask is not None
    y, mask = sample.kspace, sample.mask
    x = ifft2c(y)
    scale = _scale(x)
    weight = params.get("tv_cs", DEFAULTS["tv_cs"])
    for _ in range(TV_CS_ITERATIONS):
        grad_step = x - ifft2c(np.where(mask, fft2c(x) - y, 0))
        parts = np.stack([grad_step.real, grad_step.imag], axis=-1) / scale
        den = denoise_tv_chambolle(parts, weight=weight, channel_axis=-1) * scale
        x = den[..., 0] + 1j * den[..., 1]
    return np.abs(x).astype(np.float32)


def identity(sample: Sample, params: dict[str, float]) -> np.ndarray:
    return sample.degraded


def tv(sample: Sample, params: dict[str, float]) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    x, lo, span = _unit(sample.degraded)
    return (denoise_tv_chambolle(x, weight=params.get("tv", DEFAULTS["tv"])) * span + lo).astype(np.float32)


def nlm(sample: Sample, params: dict[str, float]) -> np.ndarray:
    from skimage.restoration import denoise_nl_means, estimate_sigma

    x, lo, span = _unit(sample.degraded)
    sigma = float(estimate_sigma(x))
    h = params.get("nlm", DEFAULTS["nlm"]) * sigma
    out = denoise_nl_means(x, h=h, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True)
    return (out * span + lo).astype(np.float32)


def wavelet(sample: Sample, params: dict[str, float]) -> np.ndarray:
    from skimage.restoration import denoise_wavelet

    x, lo, span = _unit(sample.degraded)
    out = denoise_wavelet(x, method="BayesShrink", mode="soft", rescale_sigma=True)
    return (out * span + lo).astype(np.float32)


def _unit(x: np.ndarray) -> tuple[np.ndarray, float, float]:
    lo, hi = float(np.min(x)), float(np.percentile(x, 99.9))
    span = hi - lo if hi > lo else 1.0
    return (x.astype(np.float64) - lo) / span, lo, span


def _factor(sample: Sample) -> int:
    assert sample.low_res is not None
    return int(np.ceil(sample.reference.shape[-1] / sample.low_res.shape[-1]))


def _sr(order: int) -> Baseline:
    def run(sample: Sample, params: dict[str, float]) -> np.ndarray:
        assert sample.low_res is not None
        up = upsample_baseline(sample.low_res, _factor(sample), order, shape=sample.reference.shape)
        return up.astype(np.float32)

    return run


def bicubic(sample: Sample, params: dict[str, float]) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    assert sample.low_res is not None
    low = torch.from_numpy(np.asarray(sample.low_res, dtype=np.float32))[None, None]
    up = F.interpolate(low, scale_factor=_factor(sample), mode="bicubic", align_corners=False)
    h, w = sample.reference.shape
    return up[0, 0, :h, :w].numpy().astype(np.float32)


def methods(kind: str) -> dict[str, Baseline]:
    """The classical methods of a degradation kind, by name (``pairs``: the denoisers)."""
    if kind == "kspace":
        return {"zero_filled": zero_filled, "tv_cs": tv_cs}
    if kind == "sr":
        return {"bspline": _sr(3), "linear": _sr(1), "bicubic": bicubic}
    first = "fbp" if kind == "lowdose-ct" else "input"
    return {first: identity, "tv": tv, "nlm": nlm, "wavelet": wavelet}


def tune(
    kind: str, samples: list[Sample], score: Callable[[np.ndarray, np.ndarray], float]
) -> dict[str, float]:
    """The weight of each tunable method of ``kind`` with the best mean ``score`` on ``samples``."""
    chosen: dict[str, float] = {}
    for name, fn in methods(kind).items():
        if name not in WEIGHT_GRID or not samples:
            continue
        means = []
        for w in WEIGHT_GRID[name]:
            means.append(np.mean([score(fn(s, {name: w}), s.reference) for s in samples]))
        chosen[name] = float(WEIGHT_GRID[name][int(np.argmax(means))])
    return chosen
