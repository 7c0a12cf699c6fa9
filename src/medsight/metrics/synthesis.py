"""Metrics of generated images against real ones, on features of an encoder trained on the same modality
(no hub weights: Inception's ImageNet features are neither available offline nor a good judge of
medical images).

* :func:`frechet_distance` (FID's formula, Heusel et al. 2017): ``||mu_r - mu_f||^2 + Tr(S_r + S_f -
  2 (S_r S_f)^(1/2))`` of the two feature sets' Gaussians;
* :func:`kernel_distance` (KID, Binkowski et al. 2018): the unbiased MMD^2 with the cubic polynomial
  kernel ``(x.y / d + 1)^3``, averaged over random subsets;
* :func:`precision_recall` (improved precision / recall, Kynkaanniemi et al. 2019): the share of
  generated samples inside the real k-NN manifold (the union of balls reaching each real sample's k-th
  neighbour) and the share of real samples inside the generated one;
* :func:`memorisation`: for each generated image its nearest training image ``t``; memorised when it is
  closer to ``t`` than ``t`` is to any other training image. The same share for held-out real images is
  the rate a generator that copies nothing would still show;
* :func:`translation_metrics`: PSNR / SSIM / MAE of a translated image inside a mask (PSNR and SSIM are
  :mod:`medsight.metrics.enhancement`'s, scikit-image's, with a data range of 1 for [0, 1] images).

Example::

    fid = frechet_distance(real_features, fake_features)
    prec, rec = precision_recall(real_features, fake_features, k=3)
"""

from __future__ import annotations

import math
import warnings

import numpy as np


def frechet_from_stats(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """The Frechet distance of N(mu1, s1) and N(mu2, s2)."""
    from scipy import linalg

    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(s1, np.float64), np.asarray(s2, np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean, err = linalg.sqrtm(s1 @ s2, disp=False)
        if not np.isfinite(covmean).all() or err > 1e-3:  # singular: offset the diagonals (pytorch-fid's fix)
            offset = np.eye(s1.shape[0]) * 1e-6
            covmean, _ = linalg.sqrtm((s1 + offset) @ (s2 + offset), disp=False)
    covmean = np.real(covmean)
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean), 0.0))


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """FID's formula on two feature sets ``(N, D)`` (sample means and covariances)."""
    real, fake = _features(real, "real"), _features(fake, "fake")
    return frechet_from_stats(
        real.mean(0),
        np.atleast_2d(np.cov(real, rowvar=False)),
        fake.mean(0),
        np.atleast_2d(np.cov(fake, rowvar=False)),
    )


def _features(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} features: expected (N >= 2, D), got shape {x.shape}")
    return x


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 of ``x`` and ``y`` with KID's kernel ``(a.b / d + 1)^3``."""
    d = x.shape[1]
    kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
    m, n = len(x), len(y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def kernel_distance(
    real: np.ndarray, fake: np.ndarray, subsets: int = 20, subset_size: int = 200, seed: int = 0
) -> tuple[float, float]:
    """KID: the mean and standard deviation of :func:`mmd2_unbiased` over random subsets."""
    real, fake = _features(real, "real"), _features(fake, "fake")
    size = min(subset_size, len(real), len(fake))
    rng = np.random.default_rng(seed)
    values = [
        mmd2_unbiased(
            real[rng.choice(len(real), size, replace=False)], fake[rng.choice(len(fake), size, replace=False)]
        )
        for _ in range(subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def _kth_radius(x: np.ndarray, k: int) -> np.ndarray:
    d = _pairwise(x, x)
    return np.sort(d, axis=1)[:, k]  # column 0 is the point itself


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (k-NN manifolds of each set)."""
    real, fake = _features(real, "real"), _features(fake, "fake")
    if k >= min(len(real), len(fake)):
        raise ValueError(f"precision_recall: k={k} needs more than k samples in each set")
    d = _pairwise(fake, real)
    precision = float((d <= _kth_radius(real, k)[None, :]).any(1).mean())
    recall = float((d.T <= _kth_radius(fake, k)[None, :]).any(1).mean())
    return precision, recall


def nearest_training(samples: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each sample (flattened), the index of and the Euclidean distance to its nearest training image."""
    d = _pairwise(
        samples.reshape(len(samples), -1).astype(np.float64), train.reshape(len(train), -1).astype(np.float64)
    )
    idx = d.argmin(1)
    return idx, d[np.arange(len(d)), idx]


def memorisation(samples: np.ndarray, train: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The memorised share of ``samples`` (see the module doc), with each sample's nearest training index
    and whether it counts as memorised."""
    flat = train.reshape(len(train), -1).astype(np.float64)
    d_train = _pairwise(flat, flat)
    np.fill_diagonal(d_train, np.inf)
    own = d_train.min(1)
    idx, dist = nearest_training(samples, train)
    flags = dist < own[idx]
    return float(flags.mean()), idx, flags


def translation_metrics(
    pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, float]:
    """PSNR (dB), SSIM and MAE of a 2D translated image against its reference in [0, 1], inside ``mask``."""
    from medsight.metrics.enhancement import psnr, ssim

    pred, ref = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    m = np.ones(ref.shape, bool) if mask is None else np.asarray(mask, bool)
    if not m.any():
        return {"psnr": math.nan, "ssim": math.nan, "mae": math.nan}
    return {
        "psnr": psnr(pred[None], ref[None], m[None], rng=1.0),
        "ssim": ssim(pred[None], ref[None], m[None], rng=1.0),
        "mae": float(np.abs(pred - ref)[m].mean()),
    }


__all__ = [
    "frechet_distance",
    "frechet_from_stats",
    "kernel_distance",
    "memorisation",
    "mmd2_unbiased",
    "nearest_training",
    "precision_recall",
    "translation_metrics",
]
