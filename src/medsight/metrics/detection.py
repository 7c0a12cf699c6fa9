"""Detection metrics: COCO average precision, FROC (the LUNA16 CPM), per-image rows, bootstrap CIs.

Pure numpy. One image's detections and reference boxes are a mapping (or a
:class:`medsight.data.spec.Boxes`, whose ``coords`` are the boxes)::

    prediction = {"boxes": (M, 4 | 6), "labels": (M,) class ids, "scores": (M,)}
    reference = {"boxes": (N, 4 | 6), "labels": (N,)}  # optional "image_id" names the image in errors

Boxes are corners, **(x0, y0, x1, y1)** in 2D and **(x0, y0, z0, x1, y1, z1)** in 3D, in pixels /
voxels of the image, continuous and inclusive-exclusive: ``x1 - x0`` is the width, with no "+1" (as
torchvision, MONAI and COCO's own IoU). ``x1 >= x0`` on every axis; zero-size boxes are allowed and
overlap nothing. For 2D COCO data, x is the column and y the row; the metrics only need predictions
and references to share one axis order. COCO's JSON stores (x, y, w, h): convert with
:func:`xywh_to_xyxy` / :func:`xyxy_to_xywh`.

Metrics:

* :func:`coco_map`: average precision exactly as pycocotools' ``COCOeval`` (bbox, area "all",
  ``maxDets`` 100 per image and class, 101-point interpolated precision, greedy matching by
  descending score, no crowd); 3D boxes run the same algorithm with 3D IoU. An image without
  reference boxes is a negative: its detections are false positives. A class without any reference
  box has AP NaN (COCO's -1) and is left out of the mean. COCOeval adds ``np.spacing(1)`` to the
  precision's denominator and this module does not, so values agree to about 1e-15 (and perfect
  detections score exactly 1.0).
* :func:`froc`: lesion-level sensitivity against average false positives per image, and the CPM (mean
  sensitivity at 1/8, 1/4, 1/2, 1, 2, 4, 8 FPs per image), scored as the LUNA16 challenge does: a
  detection *hits* a reference box when their IoU is >= 0.1 (default) or, with ``criterion="center"``,
  when its centre lies inside the reference box (LUNA16's hit: the candidate inside the nodule). A
  reference is found at the highest score of the detections hitting it; a detection hitting no
  reference is a false positive; further hits on a found reference are neither (LUNA16 ignores them).
  Sensitivity between operating points is interpolated linearly (``np.interp``, as LUNA16). Labels
  are ignored (lesions are class-agnostic) unless ``match_labels=True``; no detection is dropped.
* :func:`detection_summary`: mAP@0.5, mAP@0.5:0.95 and the CPM with percentile-bootstrap CIs over
  images, plus AP per class, as ``{"all": {...}, "per_class": {name: {...}}}``.
* :func:`detection_rows`: one row per image (TP / FP / FN at IoU 0.5, mean best IoU) for a
  :class:`medsight.metrics.MetricTable`.

Example:
    >>> ref = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    >>> pred = [{"boxes": [[0, 0, 10, 10]], "labels": [0], "scores": [0.9]}]
    >>> coco_map(pred, ref)["map_50_95"]
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from medsight.errors import ConfigError, DataError, ShapeError
from medsight.metrics.classification import _div, _nanmean

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # 0.5:0.05:0.95 exactly as COCOeval builds them
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
FROC_FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # LUNA16
CRITERIA = ("iou", "center")

_BOOT_CHUNK_ELEMENTS = 4_000_000  # resamples x detections x thresholds per chunk


@dataclass(frozen=True)
class _Image:
    """One image: boxes ``(N, 2 * dim)`` float64, labels (N,) int64, scores (N,) (ones for references)."""

    name: str
    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class _ClassMatches:
    """One class's detections over all images, in COCOeval's order (descending score, stable)."""

    image: np.ndarray  # (D,) image index of each detection
    tp: np.ndarray  # (T, D) bool: matched at each IoU threshold
    n_ref: np.ndarray  # (N,) reference boxes of the class per image


@dataclass(frozen=True)
class _FrocEvents:
    """Score-sorted (descending) events: false positives and found references, with their image."""

    image: np.ndarray  # (E,)
    is_fp: np.ndarray  # (E,) bool; False: a reference found at this score
    score: np.ndarray  # (E,)
    n_ref: np.ndarray  # (N,) references per image (found or not)


# ------------------------------------------------------------------------------------------ box helpers


def xyxy_to_xywh(boxes: ArrayLike) -> np.ndarray:
    """Corners (x0, y0[, z0], x1, y1[, z1]) to corner + size (x, y[, z], w, h[, d]), as COCO's JSON.

    Example:
        >>> xyxy_to_xywh([[2, 3, 7, 5]]).tolist()
        [[2.0, 3.0, 5.0, 2.0]]
    """
    b = _box_array(boxes, "boxes")
    d = b.shape[1] // 2
    return np.concatenate([b[:, :d], b[:, d:] - b[:, :d]], axis=1)


def xywh_to_xyxy(boxes: ArrayLike) -> np.ndarray:
    """Corner + size (x, y[, z], w, h[, d]), COCO's JSON, to corners (x0, y0[, z0], x1, y1[, z1]).

    Example:
        >>> xywh_to_xyxy([[2, 3, 5, 2]]).tolist()
        [[2.0, 3.0, 7.0, 5.0]]
    """
    b = _box_array(boxes, "boxes", corners=False)
    d = b.shape[1] // 2
    if (b[:, d:] < 0).any():
        raise DataError(f"boxes: expected sizes >= 0, found {b[:, d:].min():.4g}")
    return np.concatenate([b[:, :d], b[:, :d] + b[:, d:]], axis=1)


def box_iou(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Intersection over union of every box in ``a`` with every box in ``b``: ``(len(a), len(b))``.

    2D or 3D corner boxes (both of one kind); computed as COCO does, ``i / (area_a + area_b - i)``,
    0 where boxes do not overlap.

    Example:
        >>> box_iou([[0, 0, 2, 2]], [[1, 0, 3, 2]]).round(4).tolist()
        [[0.3333]]
    """
    aa, bb = _box_array(a, "a"), _box_array(b, "b")
    if aa.shape[1] != bb.shape[1] and aa.size and bb.size:
        raise ShapeError("b: boxes", f"(M, {aa.shape[1]}) like a", bb.shape)
    return _iou(aa, bb)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    d = a.shape[1] // 2
    lo = np.maximum(a[:, None, :d], b[None, :, :d])
    hi = np.minimum(a[:, None, d:], b[None, :, d:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=2)
    union = np.prod(a[:, d:] - a[:, :d], axis=1)[:, None] + np.prod(b[:, d:] - b[:, :d], axis=1)[None, :]
    return np.nan_to_num(_div(inter, union - inter))  # two zero-size boxes: 0, as COCO


# ------------------------------------------------------------------------------------------ COCO mAP


def coco_map(
    predictions: Sequence[Any],
    references: Sequence[Any],
    iou_thresholds: Sequence[float] | np.ndarray = COCO_IOU_THRESHOLDS,
    *,
    num_classes: int | None = None,
    max_detections: int = 100,
) -> dict[str, Any]:
    """COCO average precision, equal to pycocotools' ``COCOeval`` (bbox) on the same boxes.

    Args:
        predictions: per image, ``{"boxes", "labels", "scores"}``.
        references: per image (same order and length), ``{"boxes", "labels"}``.
        iou_thresholds: IoU thresholds averaged in ``map_50_95`` (COCO's 0.5:0.05:0.95 by default).
        num_classes: classes are ``0..num_classes-1`` (labels outside are an error); None: the labels
            seen in references or predictions.
        max_detections: the highest-scored detections kept per image and class (COCO's ``maxDets``).

    Returns:
        ``map_50`` (AP at IoU 0.5, mean over classes with a reference), ``map_50_95`` (mean over
        ``iou_thresholds`` and those classes), ``ap_50`` / ``ap_50_95`` ``{class id: AP}`` (NaN for a
        class without reference boxes), ``ap_per_threshold`` ``{class id: [AP per threshold]}``,
        ``iou_thresholds`` and ``n_images``.

    Example:
        >>> ref = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
        >>> pred = [{"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "labels": [0, 0], "scores": [0.6, 0.9]}]
        >>> coco_map(pred, ref)["map_50"]  # the false positive ranked first: precision 1/2 at recall 1
        0.5
    """
    if max_detections < 1:
        raise ConfigError(f"max_detections: expected >= 1, got {max_detections}")
    thr, n_thr, i50 = _thresholds(iou_thresholds)
    preds, refs = _parse(predictions, references)
    classes = _classes(preds, refs, num_classes)
    ones = np.ones((1, len(refs)))
    per_thr = {
        c: _average_precision(_match_class(preds, refs, c, thr, max_detections), ones)[0] for c in classes
    }
    ap50 = {c: float(v[i50]) for c, v in per_thr.items()}
    ap = {c: float(v[:n_thr].mean()) for c, v in per_thr.items()}
    return {
        "map_50": _mean_of(ap50.values()),
        "map_50_95": _mean_of(ap.values()),
        "ap_50": ap50,
        "ap_50_95": ap,
        "ap_per_threshold": {c: v[:n_thr].tolist() for c, v in per_thr.items()},
        "iou_thresholds": thr[:n_thr].tolist(),
        "n_images": len(refs),
    }


def _thresholds(iou_thresholds: Sequence[float] | np.ndarray) -> tuple[np.ndarray, int, int]:
    """The thresholds to match at (the given ones, then 0.5 if missing), their count and 0.5's index."""
    thr = np.asarray(iou_thresholds, dtype=np.float64).ravel()
    if thr.size == 0 or not np.isfinite(thr).all() or thr.min() <= 0 or thr.max() > 1:
        raise ConfigError(f"iou_thresholds: expected numbers in (0, 1], got {thr.tolist()}")
    at50 = np.flatnonzero(np.isclose(thr, 0.5, rtol=0.0, atol=1e-12))
    if at50.size:
        return thr, thr.size, int(at50[0])
    return np.append(thr, 0.5), thr.size, thr.size


def _match_class(
    preds: list[_Image], refs: list[_Image], cls: int, thr: np.ndarray, max_det: int
) -> _ClassMatches:
    """COCOeval's evaluateImg for one class on every image, then its global sort by score."""
    images, scores, tps, n_ref = [], [], [], np.zeros(len(refs))
    for i, (p, r) in enumerate(zip(preds, refs, strict=True)):
        keep = p.labels == cls
        s = p.scores[keep]
        order = np.argsort(-s, kind="mergesort")[:max_det]
        gt = r.boxes[r.labels == cls]
        n_ref[i] = len(gt)
        tps.append(_greedy_match(_iou(p.boxes[keep][order], gt), thr))
        scores.append(s[order])
        images.append(np.full(order.size, i))
    score = np.concatenate(scores)
    order = np.argsort(-score, kind="mergesort")
    tp = np.concatenate(tps, axis=1)[:, order]
    return _ClassMatches(image=np.concatenate(images)[order].astype(np.int64), tp=tp, n_ref=n_ref)


def _greedy_match(ious: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """``(T, D)`` True where detection d (sorted by score) matches at threshold t, COCO's rule.

    Each detection takes the still unmatched reference of highest IoU >= t (the last one on ties, as
    COCOeval's loop does); thresholds are capped at 1 - 1e-10 as there.
    """
    n_det, n_ref = ious.shape
    tp = np.zeros((thr.size, n_det), dtype=bool)
    if n_det == 0 or n_ref == 0:
        return tp
    free = np.ones((thr.size, n_ref), dtype=bool)
    cap = np.minimum(thr, 1 - 1e-10)[:, None]
    for d in range(n_det):
        ok = free & (ious[d][None, :] >= cap)
        hit = ok.any(axis=1)
        last = n_ref - 1 - np.argmax(np.where(ok, ious[d][None, :], -1.0)[:, ::-1], axis=1)
        tp[hit, d] = True
        free[np.flatnonzero(hit), last[hit]] = False
    return tp


def _average_precision(m: _ClassMatches, weights: np.ndarray) -> np.ndarray:
    """AP ``(B, T)`` for each row of image weights ``(B, N)``; NaN where the class has no reference.

    A weight of k counts the image k times (a bootstrap resample); all ones is COCOeval's accumulate.
    """
    n_ref = weights @ m.n_ref
    out = np.zeros((weights.shape[0], m.tp.shape[0]))
    if m.image.size:
        w = weights[:, m.image][:, None, :]
        tp_cum = np.cumsum(w * m.tp[None], axis=2)
        fp_cum = np.cumsum(w * ~m.tp[None], axis=2)
        recall = tp_cum / np.where(n_ref > 0, n_ref, 1.0)[:, None, None]
        precision = np.nan_to_num(_div(tp_cum, tp_cum + fp_cum))  # 0 before the first counted detection
        out = _interpolated_ap(recall, precision)
    out[n_ref == 0] = np.nan
    return out


def _interpolated_ap(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Mean over COCO's 101 recall thresholds r of the best precision at recall >= r (0 if none).

    ``recall`` / ``precision`` ``(..., D)`` along the ranked detections, recall non-decreasing. As
    COCOeval's ``searchsorted(rc, recThrs, "left")`` into the right-to-left running maximum, vectorised.
    """
    shape, n = recall.shape[:-1], recall.shape[-1]
    n_rec = COCO_RECALL_THRESHOLDS.size
    best = np.maximum.accumulate(precision[..., ::-1], axis=-1)[..., ::-1].reshape(-1, n)
    below = np.searchsorted(COCO_RECALL_THRESHOLDS, recall, side="right").reshape(-1, n)  # thresholds <= rc
    rows = best.shape[0]
    counts = np.bincount(
        (np.arange(rows)[:, None] * (n_rec + 1) + below).ravel(), minlength=rows * (n_rec + 1)
    )
    first = np.cumsum(counts.reshape(rows, n_rec + 1), axis=1)[:, :n_rec]  # first index with rc >= r
    q = np.where(first < n, np.take_along_axis(best, np.minimum(first, n - 1), axis=1), 0.0)
    return q.mean(axis=1).reshape(shape)


def _mean_of(values: Any) -> float:
    """Mean of the finite values, NaN when there is none."""
    return float(_nanmean(np.asarray(list(values), dtype=np.float64)))


# ------------------------------------------------------------------------------------------------ FROC


def froc(
    predictions: Sequence[Any],
    references: Sequence[Any],
    fp_rates: Sequence[float] = FROC_FP_RATES,
    *,
    criterion: str = "iou",
    iou_threshold: float = 0.1,
    match_labels: bool = False,
) -> dict[str, Any]:
    """Free-response ROC: lesion-level sensitivity against average false positives per image.

    Args:
        predictions: per image, ``{"boxes", "labels", "scores"}``.
        references: per image, ``{"boxes", "labels"}``.
        fp_rates: false positives per image at which sensitivity is read (LUNA16's by default).
        criterion: ``"iou"`` (a hit is IoU >= ``iou_threshold``) or ``"center"`` (the detection's
            centre lies inside the reference box, borders included).
        iou_threshold: the IoU of a hit with ``criterion="iou"``.
        match_labels: a hit also needs the same label; False (default) scores class-agnostic lesions.

    Returns:
        ``fps_per_image``, ``sensitivity`` and ``thresholds`` (the curve for plotting: a point per
        distinct score, keeping the last of those with equal fps, from fps 0, i.e. (0, 0) at threshold
        inf when the top-scored detection is a false positive), ``fp_rates``, ``sensitivity_at``
        (one per rate), ``cpm`` (their mean; NaN without any reference box), ``n_images``,
        ``n_references``.

    Example:
        >>> ref = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}, {"boxes": [], "labels": []}]
        >>> pred = [{"boxes": [[1, 1, 10, 10]], "labels": [0], "scores": [0.8]},
        ...         {"boxes": [[0, 0, 5, 5]], "labels": [0], "scores": [0.9]}]
        >>> froc(pred, ref)["sensitivity_at"]  # the FP outranks the hit: linear from (0, 0) to (0.5, 1)
        [0.25, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    """
    preds, refs = _parse(predictions, references)
    rates = _fp_rates(fp_rates)
    events = _froc_events(preds, refs, criterion, iou_threshold, match_labels)
    fps, sens, thresholds = _froc_curve(events, np.ones(len(refs)))
    at = np.interp(rates, fps, sens) if events.n_ref.sum() else np.full(rates.size, np.nan)
    return {
        "fps_per_image": fps,
        "sensitivity": sens,
        "thresholds": thresholds,
        "fp_rates": rates.tolist(),
        "sensitivity_at": at.tolist(),
        "cpm": _mean_of(at) if events.n_ref.sum() else math.nan,
        "n_images": len(refs),
        "n_references": int(events.n_ref.sum()),
    }


def _fp_rates(fp_rates: Sequence[float]) -> np.ndarray:
    rates = np.asarray(fp_rates, dtype=np.float64).ravel()
    if rates.size == 0 or not np.isfinite(rates).all() or rates.min() <= 0:
        raise ConfigError(f"fp_rates: expected positive numbers, got {rates.tolist()}")
    return rates


def _froc_events(
    preds: list[_Image], refs: list[_Image], criterion: str, iou_threshold: float, match_labels: bool
) -> _FrocEvents:
    """False positives and found references (at the best hitting score) of every image, by score."""
    if criterion not in CRITERIA:
        raise ConfigError(f"criterion: expected one of {', '.join(CRITERIA)}, got {criterion!r}")
    if not 0 < iou_threshold <= 1:
        raise ConfigError(f"iou_threshold: expected a number in (0, 1], got {iou_threshold!r}")
    image, is_fp, score = [], [], []
    for i, (p, r) in enumerate(zip(preds, refs, strict=True)):
        hits = _hits(p.boxes, r.boxes, criterion, iou_threshold)
        if match_labels:
            hits &= p.labels[:, None] == r.labels[None, :]
        found = np.where(hits, p.scores[:, None], -np.inf).max(axis=0, initial=-np.inf)
        fp_scores, ref_scores = p.scores[~hits.any(axis=1)], found[np.isfinite(found)]
        score += [fp_scores, ref_scores]
        is_fp += [np.ones(fp_scores.size, bool), np.zeros(ref_scores.size, bool)]
        image += [np.full(fp_scores.size + ref_scores.size, i)]
    all_scores = np.concatenate(score)
    order = np.argsort(-all_scores, kind="mergesort")
    return _FrocEvents(
        image=np.concatenate(image)[order].astype(np.int64),
        is_fp=np.concatenate(is_fp)[order],
        score=all_scores[order],
        n_ref=np.array([len(r.boxes) for r in refs], dtype=np.float64),
    )


def _hits(pred: np.ndarray, ref: np.ndarray, criterion: str, iou_threshold: float) -> np.ndarray:
    """``(P, G)`` True where detection p hits reference g."""
    if criterion == "iou":
        return _iou(pred, ref) >= iou_threshold
    d = pred.shape[1] // 2
    centre = (pred[:, :d] + pred[:, d:]) / 2
    inside = (centre[:, None, :] >= ref[None, :, :d]) & (centre[:, None, :] <= ref[None, :, d:])
    return inside.all(axis=2)


def _froc_curve(ev: _FrocEvents, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The FROC curve for image weights ``(N,)``: fps per image, sensitivity, score threshold.

    One point per distinct score (every detection scored at least that), after the point (0, 0) above
    every score; of points with equal fps the last (highest sensitivity) is kept.
    """
    w = weights[ev.image]
    fps = np.concatenate([[0.0], np.cumsum(w * ev.is_fp)]) / weights.sum()
    found = np.concatenate([[0.0], np.cumsum(w * ~ev.is_fp)])
    sens = found / max(float(weights @ ev.n_ref), 1.0)
    thresholds = np.concatenate([[np.inf], ev.score])
    keep = np.ones(ev.score.size + 1, dtype=bool)
    keep[1:-1] = ev.score[1:] != ev.score[:-1]  # the last event of each score
    fps, sens, thresholds = fps[keep], sens[keep], thresholds[keep]
    last_of_fps = np.concatenate([fps[1:] != fps[:-1], [True]])
    return fps[last_of_fps], sens[last_of_fps], thresholds[last_of_fps]


def _cpm(ev: _FrocEvents, weights: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Sensitivity at each FP rate ``(B, R)`` for each row of image weights; NaN without references."""
    out = np.full((weights.shape[0], rates.size), np.nan)
    for b, w in enumerate(weights):
        if w @ ev.n_ref > 0:
            fps, sens, _ = _froc_curve(ev, w)
            out[b] = np.interp(rates, fps, sens)
    return out


# ------------------------------------------------------------------------------------ summary with CIs


def detection_summary(
    predictions: Sequence[Any],
    references: Sequence[Any],
    class_names: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """mAP@0.5, mAP@0.5:0.95, CPM and AP per class with percentile-bootstrap CIs over images.

    Each resample draws the images with replacement (seeded, so the result is deterministic); an
    image drawn k times counts k times. "mean" is the value on all images (:func:`coco_map`,
    :func:`froc` with their defaults), "n" the number of images; resamples where a value is
    undefined (no reference of the class drawn) are left out of its CI.

    Args:
        predictions: per image, ``{"boxes", "labels", "scores"}``.
        references: per image, ``{"boxes", "labels"}``.
        class_names: the name of each class id (labels index this list).
        n_boot: number of bootstrap resamples.
        seed: seed of the resampling.
        alpha: the CI is the (1 - alpha) percentile interval.

    Returns:
        ``{"all": {"map_50", "map_50_95", "cpm", "sens_at_fp_<rate>"...: {mean, ci_low, ci_high, n}},
        "per_class": {name: {"ap_50", "ap_50_95": {...}}}}``, the pooled summary of a MetricTable.

    Example:
        >>> ref = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}] * 3
        >>> pred = [{"boxes": [[0, 0, 10, 10]], "labels": [0], "scores": [0.9]}] * 3
        >>> detection_summary(pred, ref, ["lesion"], n_boot=10)["all"]["map_50"]
        {'mean': 1.0, 'ci_low': 1.0, 'ci_high': 1.0, 'n': 3}
    """
    if n_boot < 1 or not 0 < alpha < 1:
        raise ConfigError(
            f"detection_summary: expected n_boot >= 1 and 0 < alpha < 1, got {n_boot=}, {alpha=}"
        )
    preds, refs = _parse(predictions, references)
    names = [str(c) for c in class_names]
    _classes(preds, refs, len(names))  # labels must index class_names
    thr, n_thr, i50 = _thresholds(COCO_IOU_THRESHOLDS)
    matches = [_match_class(preds, refs, c, thr, 100) for c in range(len(names))]
    events = _froc_events(preds, refs, "iou", 0.1, False)

    def stats(w: np.ndarray) -> dict[str, np.ndarray]:
        return _pooled_stats(w, matches, events, names, i50, n_thr)

    widest = max([m.tp.size for m in matches] + [events.image.size, 1])
    flat = _bootstrap(stats, len(refs), n_boot, seed, alpha, chunk=max(1, _BOOT_CHUNK_ELEMENTS // widest))
    summary: dict[str, Any] = {"all": {k: v for k, v in flat.items() if "/" not in k}, "per_class": {}}
    for key, value in flat.items():
        if "/" in key:
            name, metric = key.rsplit("/", 1)
            summary["per_class"].setdefault(name, {})[metric] = value
    return summary


def _pooled_stats(
    w: np.ndarray, matches: list[_ClassMatches], events: _FrocEvents, names: list[str], i50: int, n_thr: int
) -> dict[str, np.ndarray]:
    """Every summary value for each row of image weights ``(B, N)``; per class as ``"<name>/<metric>"``."""
    ap = np.stack([_average_precision(m, w) for m in matches], axis=1)  # (B, K, T)
    sens = _cpm(events, w, np.asarray(FROC_FP_RATES))
    out = {"map_50": _nanmean(ap[:, :, i50]), "map_50_95": _nanmean(ap[:, :, :n_thr].mean(axis=2))}
    out["cpm"] = sens.mean(axis=1)
    out.update({f"sens_at_fp_{r:g}": sens[:, j] for j, r in enumerate(FROC_FP_RATES)})
    for k, name in enumerate(names):
        out[f"{name}/ap_50"], out[f"{name}/ap_50_95"] = ap[:, k, i50], ap[:, k, :n_thr].mean(axis=1)
    return out


def _bootstrap(
    stats: Callable[[np.ndarray], dict[str, np.ndarray]],
    n: int,
    n_boot: int,
    seed: int,
    alpha: float,
    chunk: int,
) -> dict[str, dict[str, float]]:
    """``{metric: {mean, ci_low, ci_high, n}}`` from ``stats(weights (B, n)) -> {metric: (B,)}``."""
    point = stats(np.ones((1, n)))
    rng = np.random.default_rng(seed)
    parts = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        parts.append(stats(np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)))
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    out: dict[str, dict[str, float]] = {}
    for metric, value in point.items():
        boot = np.concatenate([p[metric] for p in parts])
        boot = boot[np.isfinite(boot)]
        low, high = (float(v) for v in np.percentile(boot, q)) if boot.size else (math.nan, math.nan)
        out[metric] = {"mean": float(value[0]), "ci_low": low, "ci_high": high, "n": n}
    return out


# ------------------------------------------------------------------------------------- per-image rows


def detection_rows(
    predictions: Sequence[Any],
    references: Sequence[Any],
    *,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """One row per image for a :class:`medsight.metrics.MetricTable` (key ``case_id``).

    Detections scored >= ``score_threshold`` are matched to references of their class by COCO's
    greedy rule at ``iou_threshold``.

    Args:
        predictions: per image, ``{"boxes", "labels", "scores"}``.
        references: per image, ``{"boxes", "labels"}`` (``"image_id"`` becomes the ``case_id``).
        iou_threshold: IoU of a true positive.
        score_threshold: detections below it are dropped.

    Returns:
        Rows ``case_id, n_ref, n_pred, tp, fp, fn, precision, recall`` (NaN when undefined) and
        ``mean_best_iou``: over the image's references, the best IoU with a kept detection of the same
        class (0 for a missed one; NaN without references).

    Example:
        >>> ref = [{"boxes": [[0, 0, 10, 10]], "labels": [0], "image_id": "a"}]
        >>> pred = [{"boxes": [[0, 0, 10, 5]], "labels": [0], "scores": [0.9]}]
        >>> row = detection_rows(pred, ref)[0]
        >>> row["tp"], row["fn"], row["mean_best_iou"]
        (1, 0, 0.5)
    """
    if not 0 < iou_threshold <= 1:
        raise ConfigError(f"iou_threshold: expected a number in (0, 1], got {iou_threshold!r}")
    preds, refs = _parse(predictions, references)
    return [_image_row(p, r, iou_threshold, score_threshold) for p, r in zip(preds, refs, strict=True)]


def _image_row(p: _Image, r: _Image, iou_threshold: float, score_threshold: float) -> dict[str, Any]:
    keep = p.scores >= score_threshold
    tp, best = 0, np.zeros(len(r.boxes))
    for c in np.union1d(p.labels[keep], r.labels):
        det, gt = keep & (p.labels == c), r.labels == c
        order = np.argsort(-p.scores[det], kind="mergesort")
        ious = _iou(p.boxes[det][order], r.boxes[gt])
        tp += int(_greedy_match(ious, np.array([iou_threshold])).sum())
        best[gt] = ious.max(axis=0, initial=0.0)
    n_pred, n_ref = int(keep.sum()), len(r.boxes)
    return {
        "case_id": r.name,
        "n_ref": n_ref,
        "n_pred": n_pred,
        "tp": tp,
        "fp": n_pred - tp,
        "fn": n_ref - tp,
        "precision": float(_div(tp, n_pred)),
        "recall": float(_div(tp, n_ref)),
        "mean_best_iou": float(best.mean()) if n_ref else math.nan,
    }


# ------------------------------------------------------------------------------------------ validation


def _parse(predictions: Sequence[Any], references: Sequence[Any]) -> tuple[list[_Image], list[_Image]]:
    """Validated images; boxes of one dimensionality everywhere (empty ones reshaped to it)."""
    if isinstance(predictions, Mapping) or isinstance(references, Mapping):
        raise DataError("predictions, references: expected one entry per image (a list), got a mapping")
    if len(predictions) != len(references):
        raise DataError(
            f"predictions: expected one entry per image like references ({len(references)}), "
            f"got {len(predictions)}"
        )
    if len(references) == 0:
        raise DataError("references: expected at least one image, got none")
    names = [_image_name(r, p, i) for i, (p, r) in enumerate(zip(predictions, references, strict=True))]
    refs = [
        _read_image(r, "references", i, n, False)
        for i, (r, n) in enumerate(zip(references, names, strict=True))
    ]
    preds = [
        _read_image(p, "predictions", i, n, True)
        for i, (p, n) in enumerate(zip(predictions, names, strict=True))
    ]
    width = _common_width(preds + refs)
    return [_with_width(x, width) for x in preds], [_with_width(x, width) for x in refs]


def _image_name(ref: Any, pred: Any, index: int) -> str:
    for obj in (ref, pred):
        if isinstance(obj, Mapping) and obj.get("image_id") is not None:
            return str(obj["image_id"])
    return str(index)


def _field(obj: Any, key: str, where: str) -> Any:
    if isinstance(obj, Mapping):
        if obj.get(key) is None:
            raise DataError(f"{where}: missing field {key!r} (has {sorted(map(str, obj))})")
        return obj[key]
    attr = "coords" if key == "boxes" else key  # medsight.data.spec.Boxes
    if not hasattr(obj, attr):
        raise DataError(f"{where}: expected a mapping with {key!r}, got {type(obj).__name__}")
    return getattr(obj, attr)


def _read_image(obj: Any, side: str, index: int, name: str, scored: bool) -> _Image:
    where = f"{side}[{index}] (image {name!r})"
    boxes = _box_array(_field(obj, "boxes", where), f"{where}: boxes")
    n = len(boxes)
    labels = _vector(_field(obj, "labels", where), n, f"{where}: labels")
    if not np.all(labels == np.round(labels)) or (labels < 0).any():
        raise DataError(f"{where}: labels: expected class ids (integers >= 0), got {labels[:5].tolist()}")
    scores = _vector(_field(obj, "scores", where), n, f"{where}: scores") if scored else np.ones(n)
    return _Image(name=name, boxes=boxes, labels=labels.astype(np.int64), scores=scores)


def _box_array(raw: Any, what: str, corners: bool = True) -> np.ndarray:
    """``(N, 4)`` or ``(N, 6)`` float64 boxes, finite (corners: max >= min); an empty input is (0, 0)."""
    try:
        b = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what}: expected numbers, got {type(raw).__name__} ({exc})") from None
    if b.size == 0:
        return b.reshape(0, 0)
    if b.ndim != 2 or b.shape[1] not in (4, 6):
        raise ShapeError(what, "(N, 4) as (x0, y0, x1, y1) or (N, 6) as (x0, y0, z0, x1, y1, z1)", b.shape)
    bad = ~np.isfinite(b).all(axis=1)
    if bad.any():
        raise DataError(f"{what}: expected finite coordinates, found NaN/inf in row {int(np.argmax(bad))}")
    d = b.shape[1] // 2
    flipped = (b[:, d:] < b[:, :d]) & corners
    if flipped.any():
        row, axis = (int(v[0]) for v in np.nonzero(flipped))
        name = "xyz"[axis]
        raise DataError(
            f"{what}: row {row} has {name}1 < {name}0 ({b[row, axis + d]:g} < {b[row, axis]:g}); "
            "expected corners (x0, y0[, z0], x1, y1[, z1])"
        )
    return b


def _vector(raw: Any, n: int, what: str) -> np.ndarray:
    try:
        v = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what}: expected numbers, got {type(raw).__name__} ({exc})") from None
    if v.size == 0 and n == 0:
        return v.reshape(0)
    if v.shape != (n,):
        raise ShapeError(what, f"({n},), one per box", v.shape)
    if not np.isfinite(v).all():
        raise DataError(
            f"{what}: expected finite values, found NaN/inf at index {int(np.argmax(~np.isfinite(v)))}"
        )
    return v


def _common_width(images: list[_Image]) -> int:
    """The box width (4: 2D, 6: 3D) shared by every image with boxes; 4 when there are none."""
    filled = [x for x in images if len(x.boxes)]
    for x in filled:
        if x.boxes.shape[1] != filled[0].boxes.shape[1]:
            expected = f"(N, {filled[0].boxes.shape[1]}) like image {filled[0].name!r}"
            raise ShapeError(f"image {x.name!r}: boxes", expected, x.boxes.shape)
    return filled[0].boxes.shape[1] if filled else 4


def _with_width(x: _Image, width: int) -> _Image:
    if len(x.boxes):
        return x
    return _Image(x.name, np.zeros((0, width)), x.labels, x.scores)


def _classes(preds: list[_Image], refs: list[_Image], num_classes: int | None) -> list[int]:
    seen = np.unique(np.concatenate([x.labels for x in preds + refs]))
    if num_classes is None:
        return [int(c) for c in seen]
    if num_classes < 1:
        raise ConfigError(f"num_classes: expected >= 1, got {num_classes}")
    if seen.size and seen[-1] >= num_classes:
        where = next(x.name for x in refs + preds if (x.labels >= num_classes).any())
        raise DataError(
            f"image {where!r}: labels: expected class ids in [0, {num_classes - 1}], found {int(seen[-1])}"
        )
    return list(range(num_classes))
