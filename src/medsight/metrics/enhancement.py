"""Image-quality metrics of enhanced images against their references: PSNR, SSIM and NMSE, over the whole
image and inside a body mask, per case, with bootstrap CIs over subjects.

PSNR and SSIM are scikit-image's (``skimage.metrics``), with the data range of the reference case
(``max - min`` over its slices, fastMRI's convention of one range per volume); SSIM is the mean over
slices of 2D SSIM (7 x 7 uniform window, sample covariance: scikit-image's defaults). Inside the mask:
the mean of the SSIM map over mask pixels, PSNR and NMSE of the mask pixels.

Example::

    row = image_metrics(prediction, reference, body_mask(reference))
    row["psnr"], row["ssim"], row["nmse"], row["psnr_body"]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from medsight.metrics.table import bootstrap_ci

METRICS = ("psnr", "ssim", "nmse", "psnr_body", "ssim_body", "nmse_body")


def _check(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match reference {ref.shape}")
    if pred.ndim not in (2, 3):
        raise ValueError(f"expected a 2D slice or a stack of slices (S, H, W), got shape {pred.shape}")
    return (pred[None], ref[None]) if pred.ndim == 2 else (pred, ref)


def data_range(ref: np.ndarray) -> float:
    """The reference's ``max - min`` (1.0 for a constant reference)."""
    span = float(np.max(ref) - np.min(ref))
    return span if span > 0 else 1.0


def psnr(
    pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None, rng: float | None = None
) -> float:
    """Peak signal-to-noise ratio in dB (scikit-image's), of the pixels in ``mask`` when given."""
    from skimage.metrics import peak_signal_noise_ratio

    pred, ref = _check(pred, ref)
    rng = data_range(ref) if rng is None else rng
    if mask is not None:
        pred, ref = pred[mask.reshape(pred.shape)], ref[mask.reshape(ref.shape)]
    if np.array_equal(pred, ref):
        return math.inf
    return float(peak_signal_noise_ratio(ref, pred, data_range=rng))


def nmse(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Normalised mean squared error ``||pred - ref||^2 / ||ref||^2`` (fastMRI's NMSE)."""
    pred, ref = _check(pred, ref)
    if mask is not None:
        pred, ref = pred[mask.reshape(pred.shape)], ref[mask.reshape(ref.shape)]
    denom = float(np.sum(ref**2))
    return float(np.sum((pred - ref) ** 2) / denom) if denom > 0 else math.nan


def ssim(
    pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None, rng: float | None = None
) -> float:
    """Mean 2D SSIM over slices (scikit-image's, its default window); inside ``mask``: the SSIM map's
    mean over the mask's pixels."""
    from skimage.metrics import structural_similarity

    pred, ref = _check(pred, ref)
    rng = data_range(ref) if rng is None else rng
    if mask is None:
        return float(
            np.mean([structural_similarity(r, p, data_range=rng) for p, r in zip(pred, ref, strict=True)])
        )
    masks = mask.reshape(ref.shape)
    values = []
    for p, r, m in zip(pred, ref, masks, strict=True):
        if m.any():
            _, full = structural_similarity(r, p, data_range=rng, full=True)
            values.append(full[m])
    return float(np.concatenate(values).mean()) if values else math.nan


def body_mask(ref: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """The body in each reference slice: above ``threshold`` (default: 10% of the way from the minimum to
    the 99th percentile), holes filled, the largest component, dilated by two pixels."""
    from scipy import ndimage

    ref = np.asarray(ref, dtype=np.float64)
    stack = ref[None] if ref.ndim == 2 else ref
    lo, hi = float(stack.min()), float(np.percentile(stack, 99))
    level = lo + 0.1 * (hi - lo) if threshold is None else threshold
    out = np.zeros(stack.shape, dtype=bool)
    for i, s in enumerate(stack):
        m = ndimage.binary_fill_holes(s > level)
        labels, n = ndimage.label(m)
        if n:
            sizes = ndimage.sum(m, labels, range(1, n + 1))
            m = labels == (int(np.argmax(sizes)) + 1)
            out[i] = ndimage.binary_dilation(m, iterations=2)
    return out.reshape(ref.shape)


def image_metrics(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """PSNR, SSIM and NMSE of one case over the whole image and inside ``mask`` (default:
    :func:`body_mask`)."""
    mask = body_mask(ref) if mask is None else np.asarray(mask, dtype=bool)
    rng = data_range(ref)
    return {
        "psnr": psnr(pred, ref, rng=rng),
        "ssim": ssim(pred, ref, rng=rng),
        "nmse": nmse(pred, ref),
        "psnr_body": psnr(pred, ref, mask, rng=rng),
        "ssim_body": ssim(pred, ref, mask, rng=rng),
        "nmse_body": nmse(pred, ref, mask),
    }


def subject_summary(
    rows: Sequence[dict[str, Any]], methods: Sequence[str], n_boot: int = 2000, seed: int = 0
) -> dict[str, dict[str, dict[str, float]]]:
    """``{method: {metric: {mean, ci_low, ci_high, n}}}``: the mean over subjects of each subject's mean
    over its cases, with a percentile-bootstrap 95% CI over subjects (rows need ``subject`` and ``method``).
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        subjects = list(dict.fromkeys(str(r["subject"]) for r in mine))
        out[method] = {}
        for metric in METRICS:
            per_subject = [
                np.nanmean([_finite(r[metric]) for r in mine if str(r["subject"]) == s]) for s in subjects
            ]
            mean, low, high = bootstrap_ci(per_subject, n_boot=n_boot, seed=seed)
            out[method][metric] = {"mean": mean, "ci_low": low, "ci_high": high, "n": len(subjects)}
    return out


def _finite(v: Any) -> float:
    """Infinite PSNR (an exact reconstruction) counts as 100 dB in means; NaN stays NaN."""
    x = float(v)
    return 100.0 if x == math.inf else x


__all__ = ["METRICS", "body_mask", "data_range", "image_metrics", "nmse", "psnr", "ssim", "subject_summary"]
