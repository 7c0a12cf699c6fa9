"""Slices in, network inputs out, and back: the enhance family's torch-free pre/post-processing, shared
by training, evaluation, the PyTorch predictor and the ONNX runtime (so all of them see the same arrays).

- :func:`degrade_slice`: a clean slice and the plan's degradation -> a :class:`Sample` (the network's
  input, the reference, the degraded image a user would see, k-space and mask for k-space);
- :func:`network_input` / :func:`output_image`: normalise an input for the network, scale its output back;
- :func:`fit_plane` / :func:`fit_sample` / :func:`select_slices`: the plan's slice size, the slices worth
  training on;
- :func:`enhance_stack`: enhance a stack of slices with any network function (torch or ONNX), tiling
  image-domain inputs to the plan's slice size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from medsight.data.degradations import fft2c, ifft2c, parse_degradation
from medsight.errors import DataError

Network = Callable[[np.ndarray], np.ndarray]  # a float32 batch (B, C, H, W) -> (B, C_out, H, W)
CT_OFFSET, CT_SCALE = -1000.0, 1000.0
TILE_BATCH = 16  # tiles per network call


@dataclass
class Sample:
    """One degraded slice: what the network sees and what it should give.

    Attributes:
        degraded: the degraded image a user would see (zero-filled magnitude, FBP, noisy, upsampled).
        reference: the clean reference (for low-dose CT: the noiseless FBP).
        kspace: k-space only: the acquired (masked) centred k-space.
        mask: k-space only: the sampling mask (H, W).
        low_res: super-resolution only: the downsampled slice.
    """

    degraded: np.ndarray
    reference: np.ndarray
    kspace: np.ndarray | None = None
    mask: np.ndarray | None = None
    low_res: np.ndarray | None = None


def degrade_slice(
    clean: np.ndarray, plan: Any, rng: np.random.Generator, pixel_mm: float | None = None
) -> Sample:
    """The plan's degradation of a clean 2D slice (complex for raw k-space data) of ``pixel_mm`` pixels."""
    deg = parse_degradation(plan.degradation).at_pixel_size(pixel_mm)
    out = deg.apply(clean, rng)
    reference = np.abs(clean) if np.iscomplexobj(clean) else clean
    if out.reference is not None:
        reference = out.reference
    return Sample(
        degraded=np.asarray(out.image, dtype=np.float32),
        reference=np.asarray(reference, dtype=np.float32),
        kspace=out.kspace,
        mask=out.mask,
        low_res=out.low_res,
    )


def select_slices(stack: np.ndarray, count: int, min_foreground: float) -> list[int]:
    """Up to ``count`` evenly spaced slices of (S, H, W) whose foreground (above 10% of the stack's
    99th percentile) covers at least ``min_foreground`` of the slice; the middle one when none does."""
    mag = np.abs(stack)
    level = 0.1 * float(np.percentile(mag, 99))
    lo = float(mag.min())
    fraction = ((mag - lo) > level).mean(axis=(1, 2))
    keep = np.flatnonzero(fraction >= min_foreground)
    if keep.size == 0:
        return [len(stack) // 2]
    picks = np.linspace(0, keep.size - 1, min(count, keep.size)).round().astype(int)
    return [int(keep[i]) for i in sorted(set(picks))]


def fit_plane(x: np.ndarray, size: list[int] | tuple[int, int], fill: float | None = None) -> np.ndarray:
    """``x`` (..., H, W) centred in ``size``: cropped where larger, padded with ``fill`` (default: its
    minimum) where smaller."""
    fill = float(np.min(np.abs(x) if np.iscomplexobj(x) else x)) if fill is None else fill
    out = np.full((*x.shape[:-2], *size), fill, dtype=x.dtype)
    src, dst = [], []
    for n, m in zip(x.shape[-2:], size, strict=True):
        if n >= m:
            start = (n - m) // 2
            src.append(slice(start, start + m))
            dst.append(slice(0, m))
        else:
            start = (m - n) // 2
            src.append(slice(0, n))
            dst.append(slice(start, start + n))
    out[(..., *dst)] = x[(..., *src)]
    return out


def fit_sample(sample: Sample, size: list[int] | tuple[int, int]) -> Sample:
    """An image-domain sample's degraded image and reference centred in ``size`` together (padded with the
    reference's minimum)."""
    if sample.kspace is not None:
        raise ValueError("fit_sample: a k-space sample cannot be cropped (its k-space is the whole image's)")
    fill = float(sample.reference.min())
    return Sample(fit_plane(sample.degraded, size, fill), fit_plane(sample.reference, size, fill))


# ------------------------------------------------------------------------------------------------ in / out


def normaliser(plan: Any, image: np.ndarray) -> tuple[float, float]:
    """(offset, scale) of an input: CT fixed ``(x + 1000) / 1000``; else 0 and the 99th percentile."""
    if plan.intensity == "ct":
        return CT_OFFSET, CT_SCALE
    scale = float(np.percentile(np.abs(image), 99))
    return 0.0, scale if scale > 0 else 1.0


def network_input(plan: Any, degraded: np.ndarray, kspace: np.ndarray | None = None,
                  mask: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:  # fmt: skip
    """The network's input (C, H, W) float32 and the (offset, scale) to undo on its output.

    Image-domain networks take the degraded image; k-space networks the zero-filled image's real and
    imaginary parts and the mask (the acquired k-space is their FFT, so it is not passed twice)."""
    if not plan.kspace_input:
        offset, scale = normaliser(plan, degraded)
        return ((degraded - offset) / scale)[None].astype(np.float32), offset, scale
    if kspace is None or mask is None:
        raise DataError(
            f"{plan.network} reconstructs k-space: give raw k-space (.npy complex or .h5 with 'kspace'), "
            "not an image (make one with `medsight degrade --degradation kspace:4x --output X.npy`)"
        )
    zf = ifft2c(np.where(mask, kspace, 0))
    _, scale = normaliser(plan, np.abs(zf))
    m = np.broadcast_to(mask, zf.shape).astype(np.float32)
    x = np.stack([zf.real / scale, zf.imag / scale, m]).astype(np.float32)
    return x, 0.0, scale


def output_image(y: np.ndarray, offset: float, scale: float) -> np.ndarray:
    """The enhanced slice (H, W) from the network's output (C_out, H, W): channel 0, scaled back."""
    return (y[0].astype(np.float64) * scale + offset).astype(np.float32)


def kspace_of_image(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The acquired k-space of a (zero-filled) complex image under ``mask``."""
    return np.where(mask, fft2c(image), 0)


def infer_mask(kspace: np.ndarray) -> np.ndarray:
    """The sampling mask of raw undersampled k-space (S, H, W): the lines holding any non-zero sample,
    along the phase-encoding axis (columns when they are whole lines, else rows, else per sample)."""
    nonzero = np.abs(kspace).max(axis=0) > 0
    cols, rows = nonzero.any(axis=0), nonzero.any(axis=1)
    if np.array_equal(nonzero, np.broadcast_to(cols, nonzero.shape)):
        return np.broadcast_to(cols, nonzero.shape).copy()
    if np.array_equal(nonzero, np.broadcast_to(rows[:, None], nonzero.shape)):
        return np.broadcast_to(rows[:, None], nonzero.shape).copy()
    return nonzero


# ------------------------------------------------------------------------------------------------ inference


def _starts(n: int, tile: int) -> list[int]:
    if n <= tile:
        return [0]
    count = int(np.ceil((n - tile) / (tile * 0.75))) + 1
    return sorted({int(round(s)) for s in np.linspace(0, n - tile, count)})


def tiled(
    run: Network, x: np.ndarray, tile: list[int], out_channels: int, batch: int = TILE_BATCH
) -> np.ndarray:
    """``run`` over tiles of ``tile`` of x (C, H, W) (padded with edge values where smaller), ``batch``
    tiles per call, averaged where tiles overlap: the output (C_out, H, W)."""
    h, w = x.shape[-2:]
    th, tw = tile
    ph, pw = max(0, th - h), max(0, tw - w)
    xp = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="edge") if ph or pw else x
    acc = np.zeros((out_channels, *xp.shape[-2:]), dtype=np.float64)
    count = np.zeros(xp.shape[-2:], dtype=np.float64)
    corners = [(i, j) for i in _starts(xp.shape[-2], th) for j in _starts(xp.shape[-1], tw)]
    for k in range(0, len(corners), batch):
        chunk = corners[k : k + batch]
        y = run(np.ascontiguousarray(np.stack([xp[:, i : i + th, j : j + tw] for i, j in chunk])))
        for (i, j), out in zip(chunk, y, strict=True):
            acc[:, i : i + th, j : j + tw] += out
            count[i : i + th, j : j + tw] += 1
    return (acc / count)[:, :h, :w].astype(np.float32)


def enhance_slice(run: Network, plan: Any, degraded: np.ndarray, kspace: np.ndarray | None = None,
                  mask: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """One enhanced slice (H, W) of a degraded image (or of acquired k-space + mask)."""
    x, offset, scale = network_input(plan, degraded, kspace, mask)
    if plan.kspace_input:
        y = run(x[None])[0]  # data consistency needs the whole k-space: never tiled
    else:
        y = tiled(run, x, plan.slice_size, plan.out_channels)
    return output_image(y, offset, scale)


def enhance_stack(run: Network, plan: Any, stack: np.ndarray, kspace: np.ndarray | None = None,
                  mask: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Enhanced slices (S, H, W) of degraded slices (S, H, W), or of acquired k-space (S, H, W) + mask."""
    out = []
    for i in range(len(stack)):
        out.append(enhance_slice(run, plan, stack[i], None if kspace is None else kspace[i], mask))
    return np.stack(out)
