"""Classification metrics with percentile-bootstrap CIs, threshold choice and calibration.

Four problems share one interface (numpy in, numpy / python numbers out):

- ``"binary"``: ``probs`` ``(N, 2)`` softmax, ``y`` ``(N,)`` in {0, 1}; positive when
  ``probs[:, 1] >= threshold``.
- ``"multiclass"``: ``probs`` ``(N, K)`` softmax, ``y`` ``(N,)`` integers; prediction = argmax.
- ``"multilabel"``: ``probs`` ``(N, K)`` independent sigmoids, ``y`` ``(N, K)`` 0/1; per-label thresholds.
- ``"ordinal"``: ``probs`` ``(N, K)`` over ordered classes, ``y`` ``(N,)`` integers; prediction = argmax.

Every metric is computed from case *weights*: the point value uses weight 1 per case, a bootstrap
resample uses how often each case was drawn. That turns the bootstrap into a few matrix products
(counts) and one cumulative sum per class (AUC via ranks), so 1000 resamples of 1000 cases take well
under a second::

    summary = bootstrap_summary(y, probs, "multiclass", ["a", "b", "c"], n_boot=1000)
    summary["all"]["auc_macro"]  # {"mean": 0.91, "ci_low": 0.89, "ci_high": 0.93, "n": 1000}

Undefined values (AUC of a class with one label value, sensitivity of an absent class, precision of a
class never predicted) are NaN and left out of macro means and CIs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from medsight.errors import ConfigError, DataError

PROBLEMS = ("binary", "multiclass", "multilabel", "ordinal")
CLASS_METRICS = ("auc", "sensitivity", "specificity", "f1", "precision")

_BOOT_CHUNK_ELEMENTS = 4_000_000  # resamples x cases per chunk: bounded memory for large test sets


# ------------------------------------------------------------------------------------------- predictions


def predict_labels(probs: np.ndarray, problem: str, thresholds: list[float] | None = None) -> np.ndarray:
    """Predicted labels: ``(N,)`` integers, or ``(N, K)`` 0/1 for multilabel.

    Binary: 1 where ``probs[:, 1] >= thresholds[0]`` (default 0.5). Multiclass / ordinal: argmax.
    Multilabel: ``probs >= thresholds`` per label (default 0.5 each).
    """
    _check_problem(problem)
    p = _check_probs(probs, problem)
    if problem in ("multiclass", "ordinal"):
        return np.argmax(p, axis=1).astype(np.int64)
    n_thr = 1 if problem == "binary" else p.shape[1]
    thr = _check_thresholds(thresholds, n_thr)
    if problem == "binary":
        return (p[:, 1] >= thr[0]).astype(np.int64)
    return (p >= thr[None, :]).astype(np.int64)


def choose_thresholds(y: np.ndarray, probs: np.ndarray, problem: str) -> list[float] | None:
    """Decision thresholds maximising Youden's J (sensitivity + specificity - 1) on ``(y, probs)``.

    Meant for validation data. Binary: one threshold on ``probs[:, 1]``; multilabel: one per label;
    multiclass / ordinal: None (argmax needs none). Candidates are the midpoints between consecutive
    distinct scores, the cut below the lowest and above the highest score, and 0.5 itself; ties go to
    the candidate closest to 0.5 (so 0.5 is kept whenever it is optimal). A label with only one class
    present gets 0.5.
    """
    yy, p = _check_inputs(y, probs, problem)
    if problem == "binary":
        return [_youden_threshold(yy, p[:, 1])]
    if problem == "multilabel":
        return [_youden_threshold(yy[:, k], p[:, k]) for k in range(p.shape[1])]
    return None


def _youden_threshold(y: np.ndarray, score: np.ndarray) -> float:
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    u = np.unique(score)
    cands = np.unique(np.concatenate([(u[:-1] + u[1:]) / 2, u[:1], [np.nextafter(u[-1], np.inf), 0.5]]))
    s_pos, s_neg = np.sort(score[pos]), np.sort(score[~pos])
    tp = n_pos - np.searchsorted(s_pos, cands, side="left")  # positives with score >= t
    tn = np.searchsorted(s_neg, cands, side="left")  # negatives with score < t
    j = tp / n_pos + tn / n_neg - 1.0
    best = np.flatnonzero(np.isclose(j, j.max(), rtol=0.0, atol=1e-12))
    return float(cands[best[np.argmin(np.abs(cands[best] - 0.5))]])


# ------------------------------------------------------------------------------------------ point metrics


def point_metrics(
    y: np.ndarray,
    probs: np.ndarray,
    problem: str,
    class_names: list[str],
    thresholds: list[float] | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics on all cases: ``{"all": {...}, <class name>: {auc, sensitivity, specificity, f1, precision}}``.

    "all" holds accuracy, balanced_accuracy, auc_macro, f1_macro, sensitivity_macro, specificity_macro
    and ece; binary adds auc, sensitivity, specificity, f1, precision of the positive class; multilabel
    reports accuracy as the mean per-label accuracy and adds exact_match; ordinal adds
    quadratic_weighted_kappa and mae. Class groups are one-vs-rest (per label for multilabel).
    """
    prep = _prepare(y, probs, problem, class_names, thresholds)
    stats = _stats(np.ones((1, prep.n)), prep)
    return {g: {m: float(v[0]) for m, v in metrics.items()} for g, metrics in stats.items()}


def bootstrap_summary(
    y: np.ndarray,
    probs: np.ndarray,
    problem: str,
    class_names: list[str],
    thresholds: list[float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{group: {metric: {"mean", "ci_low", "ci_high", "n"}}}`` as the report reads it.

    "mean" is the point value on all cases (see :func:`point_metrics`), the CI the percentile
    bootstrap (1 - alpha) interval over ``n_boot`` resamples of the cases, ignoring resamples where the
    metric is undefined (NaN); "n" is the number of cases. Thresholds stay fixed across resamples.
    """
    if n_boot < 1 or not 0 < alpha < 1:
        raise ConfigError(
            f"bootstrap_summary: expected n_boot >= 1 and 0 < alpha < 1, got {n_boot=}, {alpha=}"
        )
    prep = _prepare(y, probs, problem, class_names, thresholds)
    point = _stats(np.ones((1, prep.n)), prep)
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOT_CHUNK_ELEMENTS // prep.n)
    parts: list[dict[str, dict[str, np.ndarray]]] = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, prep.n, size=(b, prep.n)) + (np.arange(b) * prep.n)[:, None]
        weights = np.bincount(idx.ravel(), minlength=b * prep.n).reshape(b, prep.n).astype(np.float64)
        parts.append(_stats(weights, prep))
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for group, metrics in point.items():
        out[group] = {}
        for metric, value in metrics.items():
            boot = np.concatenate([p[group][metric] for p in parts])
            boot = boot[np.isfinite(boot)]
            low, high = (float(v) for v in np.percentile(boot, q)) if boot.size else (math.nan, math.nan)
            out[group][metric] = {"mean": float(value[0]), "ci_low": low, "ci_high": high, "n": prep.n}
    return out


# ------------------------------------------------------------------------------- confusion, calibration


def confusion_matrix(y: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with rows = true class and columns = predicted class, ``(K, K)`` int64.

    For multilabel ``y`` / ``pred`` of shape ``(N, K)`` (0/1): per-label 2x2 matrices ``(K, 2, 2)``,
    ``[[tn, fp], [fn, tp]]`` as in sklearn's ``multilabel_confusion_matrix``.
    """
    yy, pp = np.asarray(y), np.asarray(pred)
    if yy.shape != pp.shape or yy.ndim not in (1, 2) or yy.shape[0] == 0:
        raise DataError(
            f"confusion_matrix: expected y and pred of one shape (N,) or (N, K), got {yy.shape}, {pp.shape}"
        )
    yy, pp = _as_int(yy, "y"), _as_int(pp, "pred")
    if yy.ndim == 2:
        if yy.shape[1] != num_classes:
            raise DataError(f"confusion_matrix: expected {num_classes} label columns, got {yy.shape[1]}")
        if not (np.isin(yy, (0, 1)).all() and np.isin(pp, (0, 1)).all()):
            raise DataError("confusion_matrix: multilabel y and pred must hold only 0 and 1")
        codes = 2 * yy + pp  # 0 tn, 1 fp, 2 fn, 3 tp
        return np.stack([np.bincount(codes[:, k], minlength=4).reshape(2, 2) for k in range(num_classes)])
    for name, arr in (("y", yy), ("pred", pp)):
        if arr.min() < 0 or arr.max() >= num_classes:
            raise DataError(
                f"confusion_matrix: {name} must lie in [0, {num_classes - 1}], found {arr.min()}..{arr.max()}"
            )
    return np.bincount(yy * num_classes + pp, minlength=num_classes**2).reshape(num_classes, num_classes)


def expected_calibration_error(y: np.ndarray, probs: np.ndarray, problem: str, n_bins: int = 15) -> float:
    """Expected calibration error with ``n_bins`` equal-width confidence bins ``(lo, hi]``.

    ECE = sum over bins of |mean confidence - accuracy| weighted by the bin's share of predictions.
    Binary / multiclass / ordinal: top-label (confidence = max probability, correct = argmax equals y).
    Multilabel: every (case, label) probability is a binary prediction at 0.5 with confidence
    ``max(p, 1 - p)``, all pooled.
    """
    bins = reliability_bins(y, probs, problem, n_bins)
    count = np.asarray(bins["count"], dtype=np.float64)
    gap = np.abs(np.asarray(bins["conf_sum"]) - np.asarray(bins["correct_sum"]))
    return float(gap.sum() / count.sum())


def reliability_bins(y: np.ndarray, probs: np.ndarray, problem: str, n_bins: int = 15) -> dict[str, Any]:
    """Per-bin calibration data for a reliability diagram (see :func:`expected_calibration_error`).

    Returns lists of length ``n_bins``: ``edges`` (n_bins + 1), ``confidence`` (mean confidence),
    ``accuracy`` (fraction correct; both NaN for an empty bin), ``count`` (predictions in the bin),
    and ``conf_sum`` / ``correct_sum``.
    """
    yy, p = _check_inputs(y, probs, problem)
    n_bins = _check_bins(n_bins)
    conf, correct = _confidence(yy, p, problem)
    b = _bin_index(conf, n_bins).ravel()
    count = np.bincount(b, minlength=n_bins)
    conf_sum = np.bincount(b, weights=conf.ravel(), minlength=n_bins)
    correct_sum = np.bincount(b, weights=correct.ravel(), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf, acc = conf_sum / count, correct_sum / count
    return {
        "edges": np.linspace(0.0, 1.0, n_bins + 1).tolist(),
        "confidence": mean_conf.tolist(),
        "accuracy": acc.tolist(),
        "count": count.astype(int).tolist(),
        "conf_sum": conf_sum.tolist(),
        "correct_sum": correct_sum.tolist(),
    }


def _confidence(y: np.ndarray, p: np.ndarray, problem: str) -> tuple[np.ndarray, np.ndarray]:
    """Confidence and correctness (float 0/1): ``(N,)`` top-label, or ``(N, K)`` for multilabel."""
    if problem == "multilabel":
        pred = p >= 0.5
        return np.where(pred, p, 1.0 - p), (pred == (y == 1)).astype(np.float64)
    return p.max(axis=1), (np.argmax(p, axis=1) == y).astype(np.float64)


def _bin_index(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each confidence for bins (lo, hi]; 0 falls into the first bin."""
    return np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


# --------------------------------------------------------------------------------- weighted computation


@dataclass
class _Prepared:
    problem: str
    n: int
    k: int
    class_names: list[str]
    outcome: np.ndarray  # (N, 4K) indicators of tp, fp, fn, tn per class, one-vs-rest
    correct: np.ndarray  # (N,) 1 where the case is right (all labels right for multilabel)
    ece_gap: np.ndarray  # (N, bins) confidence minus correctness per bin
    ece_units: int  # predictions per case in the ECE (1, or K for multilabel)
    auc: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]  # per class: order, pos, start, end
    confusion: np.ndarray | None  # (N, K*K) one-hot of (y, pred), ordinal only
    abs_err: np.ndarray | None  # (N,) |y - pred|, ordinal only


def _prepare(
    y: np.ndarray, probs: np.ndarray, problem: str, class_names: list[str], thresholds: list[float] | None
) -> _Prepared:
    yy, p = _check_inputs(y, probs, problem)
    n, k = p.shape
    names = [str(c) for c in class_names]
    if len(names) != k:
        raise DataError(f"class_names: expected {k} names (one per probability column), got {len(names)}")
    pred = predict_labels(p, problem, thresholds)
    if problem == "multilabel":
        truth, guess, scores = yy == 1, pred == 1, p
        correct = (truth == guess).all(axis=1)
    else:
        classes = np.arange(k)
        truth, guess = yy[:, None] == classes, pred[:, None] == classes
        scores, correct = p, yy == pred
    outcome = np.concatenate([truth & guess, ~truth & guess, truth & ~guess, ~truth & ~guess], axis=1)
    conf, right = _confidence(yy, p, problem)
    conf, right = conf.reshape(n, -1), right.reshape(n, -1)
    n_bins = 15
    onehot = _bin_index(conf, n_bins)[:, :, None] == np.arange(n_bins)
    ece_gap = ((conf - right)[:, :, None] * onehot).sum(axis=1)
    confusion = abs_err = None
    if problem == "ordinal":
        confusion = (yy * k + pred)[:, None] == np.arange(k * k)
        abs_err = np.abs(yy - pred).astype(np.float64)
    return _Prepared(
        problem=problem,
        n=n,
        k=k,
        class_names=names,
        outcome=outcome.astype(np.float64),
        correct=correct.astype(np.float64),
        ece_gap=ece_gap,
        ece_units=conf.shape[1],
        auc=[_auc_prep(truth[:, c], scores[:, c]) for c in range(k)],
        confusion=None if confusion is None else confusion.astype(np.float64),
        abs_err=abs_err,
    )


def _auc_prep(pos: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sort order, positive mask (sorted) and the first / last sorted index of each case's tie group."""
    order = np.argsort(score, kind="stable")
    s = score[order]
    new = np.concatenate([[True], s[1:] != s[:-1]])
    group = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.concatenate([starts[1:], [s.size]]) - 1
    return order, pos[order].astype(np.float64), starts[group], ends[group]


def _weighted_auc(w: np.ndarray, prep: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """AUC per row of case weights ``w`` (B, N): P(score_pos > score_neg) + 0.5 P(tie); NaN if one class."""
    order, pos, start, end = prep
    ws = w[:, order]
    wp, wn = ws * pos, ws * (1.0 - pos)
    cum = np.concatenate([np.zeros((w.shape[0], 1)), np.cumsum(wn, axis=1)], axis=1)
    below_or_tied = 0.5 * (cum[:, start] + cum[:, end + 1])  # negatives below + half the tied ones
    return _div((wp * below_or_tied).sum(axis=1), wp.sum(axis=1) * wn.sum(axis=1))


def _stats(w: np.ndarray, prep: _Prepared) -> dict[str, dict[str, np.ndarray]]:
    """Every metric for every row of case weights ``w`` (B, N): ``{group: {metric: (B,)}}``."""
    k, total = prep.k, w.sum(axis=1)
    tp, fp, fn, tn = np.split(w @ prep.outcome, 4, axis=1)  # each (B, K)
    per_class = {
        "auc": np.stack([_weighted_auc(w, a) for a in prep.auc], axis=1),
        "sensitivity": _div(tp, tp + fn),
        "specificity": _div(tn, tn + fp),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "precision": _div(tp, tp + fp),
    }
    sens, spec = per_class["sensitivity"], per_class["specificity"]
    if prep.problem == "multilabel":
        accuracy = _nanmean(_div(tp + tn, total[:, None]))
        balanced = _nanmean((sens + spec) / 2)
    else:
        accuracy, balanced = _div(w @ prep.correct, total), _nanmean(sens)
    ece = np.abs(w @ prep.ece_gap).sum(axis=1) / (total * prep.ece_units)
    overall = {
        "accuracy": accuracy,
        "balanced_accuracy": balanced,
        "auc_macro": _nanmean(per_class["auc"]),
        "f1_macro": _nanmean(per_class["f1"]),
        "sensitivity_macro": _nanmean(sens),
        "specificity_macro": _nanmean(spec),
        "ece": ece,
    }
    if prep.problem == "binary":
        overall.update({m: v[:, 1] for m, v in per_class.items()})
    elif prep.problem == "multilabel":
        overall["exact_match"] = _div(w @ prep.correct, total)
    elif prep.confusion is not None and prep.abs_err is not None:
        overall["quadratic_weighted_kappa"] = _qwk((w @ prep.confusion).reshape(-1, k, k))
        overall["mae"] = _div(w @ prep.abs_err, total)
    out = {"all": overall}
    for c, name in enumerate(prep.class_names):
        out[name] = {m: v[:, c] for m, v in per_class.items()}
    return out


def _qwk(conf: np.ndarray) -> np.ndarray:
    """Quadratic weighted Cohen's kappa of confusion matrices ``(B, K, K)``."""
    k = conf.shape[1]
    idx = np.arange(k)
    weights = (idx[:, None] - idx[None, :]) ** 2 / max(1, (k - 1) ** 2)
    total = conf.sum(axis=(1, 2))
    expected = conf.sum(axis=2)[:, :, None] * conf.sum(axis=1)[:, None, :] / total[:, None, None]
    return 1.0 - _div((weights * conf).sum(axis=(1, 2)), (weights * expected).sum(axis=(1, 2)))


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b with NaN where b is 0."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    out = np.full(a.shape, np.nan)
    np.divide(a, b, out=out, where=b != 0)
    return out


def _nanmean(x: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN (no warning) where a row has no finite value."""
    finite = np.isfinite(x)
    return _div(np.where(finite, x, 0.0).sum(axis=-1), finite.sum(axis=-1))


# ------------------------------------------------------------------------------------------- validation


def _check_problem(problem: str) -> None:
    if problem not in PROBLEMS:
        raise ConfigError(f"problem: expected one of {', '.join(PROBLEMS)}, got {problem!r}")


def _check_probs(probs: np.ndarray, problem: str) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 1:
        raise DataError(f"probs: expected a non-empty (N, K) array, got shape {p.shape}")
    if problem == "binary" and p.shape[1] != 2:
        raise DataError(f"probs: binary problems expect shape (N, 2), got {p.shape}")
    if problem in ("multiclass", "ordinal") and p.shape[1] < 2:
        raise DataError(f"probs: {problem} problems expect at least 2 columns, got {p.shape}")
    if not np.isfinite(p).all():
        raise DataError(f"probs: expected finite values, found {int((~np.isfinite(p)).sum())} NaN/inf")
    if p.min() < -1e-6 or p.max() > 1 + 1e-6:
        raise DataError(f"probs: expected probabilities in [0, 1], found {p.min():.4g}..{p.max():.4g}")
    return np.clip(p, 0.0, 1.0)


def _check_inputs(y: np.ndarray, probs: np.ndarray, problem: str) -> tuple[np.ndarray, np.ndarray]:
    _check_problem(problem)
    p = _check_probs(probs, problem)
    yy = _as_int(np.asarray(y), "y")
    if problem == "multilabel":
        if yy.shape != p.shape:
            raise DataError(f"y: multilabel expects shape {p.shape} like probs, got {yy.shape}")
        if not np.isin(yy, (0, 1)).all():
            raise DataError("y: multilabel targets must be 0 or 1")
        return yy, p
    if yy.shape != (p.shape[0],):
        raise DataError(f"y: expected shape ({p.shape[0]},) to match probs {p.shape}, got {yy.shape}")
    if yy.min() < 0 or yy.max() >= p.shape[1]:
        raise DataError(f"y: expected class indices in [0, {p.shape[1] - 1}], found {yy.min()}..{yy.max()}")
    return yy, p


def _as_int(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iuf" or (arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr))):
        raise DataError(f"{name}: expected integer labels, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _check_thresholds(thresholds: list[float] | None, n: int) -> np.ndarray:
    if thresholds is None:
        return np.full(n, 0.5)
    thr = np.asarray(thresholds, dtype=np.float64).ravel()
    if thr.size != n or not np.isfinite(thr).all():
        raise DataError(f"thresholds: expected {n} finite value(s), got {list(np.ravel(thresholds))}")
    return thr


def _check_bins(n_bins: int) -> int:
    if int(n_bins) < 1:
        raise ConfigError(f"n_bins: expected a positive integer, got {n_bins}")
    return int(n_bins)
