"""Anomaly-detection metrics: image-level AUROC and AP of scores, pixel-level AUROC, AP and best Dice of
anomaly maps against masks, Youden's threshold, and percentile-bootstrap CIs over cases.

AUROC and AP are computed as scikit-learn's ``roc_auc_score`` and ``average_precision_score`` (in numpy,
so a bootstrap of a thousand resamples takes a fraction of a second; tests check them against
scikit-learn); best Dice is the
largest Dice over thresholds of the map, as in Baur et al. 2021 and Meissen et al. 2021 (computed
exactly from the sorted map values: every threshold between two distinct values is tried).

Example:
    >>> round(image_auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])), 2)
    0.75
    >>> round(best_dice(np.array([0.9, 0.8, 0.1, 0.0]), np.array([1, 1, 0, 0])), 3)
    1.0
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

N_BOOT = 1000
ALPHA = 0.05
MAX_PIXELS = 2_000_000  # pixel metrics on at most this many pixels (a fixed, seeded subsample)
N_PIXEL_BOOT = 100  # image resamples for the CIs of pixel metrics


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.size) and 0 < int(y.sum()) < y.size


def image_auroc(y: np.ndarray, scores: np.ndarray) -> float:
    """AUROC of ``scores`` (higher: more anomalous) against ``y`` (1: anomalous), ties counted half (the
    Mann-Whitney U statistic, as scikit-learn's ``roc_auc_score``); NaN with one class."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(int).ravel()
    if not _both_classes(y):
        return math.nan
    ranks = rankdata(np.asarray(scores, dtype=np.float64).ravel())
    n1 = int(y.sum())
    n0 = y.size - n1
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def average_precision(y: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of ``scores`` for ``y == 1``: ``sum_n (R_n - R_{n-1}) P_n`` over the distinct
    score thresholds, as scikit-learn's ``average_precision_score``; NaN with one class."""
    y = np.asarray(y).astype(int).ravel()
    if not _both_classes(y):
        return math.nan
    s = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-s, kind="stable")
    s, yy = s[order], y[order]
    last = np.r_[s[1:] != s[:-1], True]  # the last index of each distinct score
    tp = np.cumsum(yy)[last]
    predicted = (np.arange(1, s.size + 1))[last]
    recall = tp / tp[-1]
    precision = tp / predicted
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def youden_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold maximising sensitivity + specificity - 1 (anomalous: score > threshold)."""
    from sklearn.metrics import roc_curve

    y = np.asarray(y).astype(int)
    if not _both_classes(y):
        return float(np.median(scores))
    fpr, tpr, thr = roc_curve(y, scores)
    k = int(np.argmax(tpr - fpr))
    finite = np.isfinite(thr)
    return float(thr[k] if finite[k] else np.max(scores)) - 1e-12


def best_dice(maps: np.ndarray, masks: np.ndarray) -> float:
    """The best Dice over all thresholds of ``maps`` (any shape) against binary ``masks``."""
    s = np.asarray(maps, dtype=np.float64).ravel()
    m = np.asarray(masks).ravel() > 0
    positives = int(m.sum())
    if positives == 0:
        return math.nan
    order = np.argsort(-s, kind="stable")
    tp = np.cumsum(m[order])
    predicted = np.arange(1, s.size + 1)
    last = np.r_[s[order][1:] != s[order][:-1], True]  # cut only between distinct values
    dice = 2 * tp[last] / (predicted[last] + positives)
    return float(dice.max())


def pixel_metrics(maps: np.ndarray, masks: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Pixel AUROC, AP and best Dice of maps against masks (pooled over images; AUROC and AP on a seeded
    subsample of at most MAX_PIXELS pixels)."""
    s = np.asarray(maps, dtype=np.float64).ravel()
    m = (np.asarray(masks).ravel() > 0).astype(int)
    if s.size > MAX_PIXELS:
        pick = np.random.default_rng(seed).choice(s.size, MAX_PIXELS, replace=False)
        sub_s, sub_m = s[pick], m[pick]
    else:
        sub_s, sub_m = s, m
    return {
        "pixel_auroc": image_auroc(sub_m, sub_s),
        "pixel_ap": average_precision(sub_m, sub_s),
        "best_dice": best_dice(s, m),
    }


def pixel_summary(
    maps: np.ndarray, masks: np.ndarray, n_boot: int = N_PIXEL_BOOT, seed: int = 0
) -> dict[str, Any]:
    """:func:`pixel_metrics` of ``maps`` / ``masks`` ``(N, *spatial)`` with 95% percentile-bootstrap CIs
    over the images (``n_boot`` resamples of whole images)."""
    full = pixel_metrics(maps, masks, seed)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(maps), len(maps))
        boots.append(pixel_metrics(maps[idx], masks[idx], seed))
    return {k: {**_ci([b[k] for b in boots], v), "n": int(len(maps))} for k, v in full.items()}


def _ci(values: list[float], point: float) -> dict[str, Any]:
    v = np.array([x for x in values if np.isfinite(x)])
    if v.size == 0 or not np.isfinite(point):
        return {"mean": point, "ci_low": math.nan, "ci_high": math.nan}
    low, high = np.percentile(v, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return {"mean": point, "ci_low": float(low), "ci_high": float(high)}


def image_summary(
    y: np.ndarray, scores: np.ndarray, threshold: float | None, n_boot: int = N_BOOT, seed: int = 0
) -> dict[str, Any]:
    """Image AUROC, AP (and, with a threshold, sensitivity, specificity, accuracy), each with a 95%
    percentile-bootstrap CI over cases (resampled within each class, so both stay present)."""
    y = np.asarray(y).astype(int)
    scores = np.asarray(scores, dtype=np.float64)

    def point(idx: np.ndarray) -> dict[str, float]:
        yy, ss = y[idx], scores[idx]
        out = {"image_auroc": image_auroc(yy, ss), "image_ap": average_precision(yy, ss)}
        if threshold is not None:
            pred = ss > threshold
            out["sensitivity"] = float(pred[yy == 1].mean()) if (yy == 1).any() else math.nan
            out["specificity"] = float((~pred[yy == 0]).mean()) if (yy == 0).any() else math.nan
            out["accuracy"] = float((pred == (yy == 1)).mean())
        return out

    full = point(np.arange(y.size))
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == c) for c in (0, 1) if (y == c).any()]
    boots = [point(np.concatenate([rng.choice(g, g.size) for g in groups])) for _ in range(n_boot)]
    summary = {k: {**_ci([b[k] for b in boots], v), "n": int(y.size)} for k, v in full.items()}
    return {"all": summary}


__all__ = [
    "average_precision",
    "best_dice",
    "image_auroc",
    "image_summary",
    "pixel_metrics",
    "youden_threshold",
]
