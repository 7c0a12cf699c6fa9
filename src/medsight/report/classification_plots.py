"""PNG plots of a classification evaluation: ROC curves, confusion matrix, reliability diagram.

Drawn with matplotlib's object API on the Agg canvas (as in :mod:`medsight.report.plots`); matplotlib is
imported inside the functions so importing this module stays light.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import DataError
from medsight.metrics.classification import (
    _check_inputs,
    confusion_matrix,
    expected_calibration_error,
    predict_labels,
    reliability_bins,
)
from medsight.report.plots import _png_bytes
from medsight.utils import atomic_write

_MAX_ROC_CURVES = 20
_ANNOTATE_UP_TO = 30  # classes; beyond that the cells are too small for numbers


def roc_png(y: np.ndarray, probs: np.ndarray, problem: str, class_names: list[str]) -> bytes:
    """ROC curve per class (one-vs-rest; the positive class only for binary) with its AUC in the legend.

    A class whose labels hold one value only has no ROC curve and is listed as "AUC n/a".
    """
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_auc_score, roc_curve

    yy, p = _check_inputs(y, probs, problem)
    if len(class_names) != p.shape[1]:
        raise DataError(f"class_names: expected {p.shape[1]} names, got {len(class_names)}")
    classes = [1] if problem == "binary" else list(range(p.shape[1]))[:_MAX_ROC_CURVES]
    fig = Figure(figsize=(5.2, 4.6), dpi=100, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    for c in classes:
        truth = yy[:, c] == 1 if problem == "multilabel" else yy == c
        if truth.all() or not truth.any():
            ax.plot([], [], label=f"{class_names[c]} (AUC n/a)")
            continue
        fpr, tpr, _ = roc_curve(truth, p[:, c])
        ax.plot(fpr, tpr, linewidth=1.5, label=f"{class_names[c]} (AUC {roc_auc_score(truth, p[:, c]):.3f})")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title("ROC")
    return _png_bytes(fig)


def confusion_png(matrix: np.ndarray, class_names: list[str]) -> bytes:
    """Confusion matrix (rows true, columns predicted) with counts; ``(K, 2, 2)`` draws one 2x2 per label."""
    m = np.asarray(matrix)
    if m.ndim == 3 and m.shape[1:] == (2, 2):
        return _multilabel_confusion_png(m, class_names)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise DataError(f"matrix: expected a (K, K) or (K, 2, 2) confusion matrix, got shape {m.shape}")
    if len(class_names) != m.shape[0]:
        raise DataError(f"class_names: expected {m.shape[0]} names, got {len(class_names)}")
    from matplotlib.figure import Figure

    k = m.shape[0]
    side = min(12.0, max(4.0, 0.45 * k + 2.5))
    fig = Figure(figsize=(side + 1.0, side), dpi=100, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    _draw_matrix(ax, m, list(class_names), list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix")
    return _png_bytes(fig)


def _multilabel_confusion_png(m: np.ndarray, class_names: list[str]) -> bytes:
    if len(class_names) != m.shape[0]:
        raise DataError(f"class_names: expected {m.shape[0]} names, got {len(class_names)}")
    from matplotlib.figure import Figure

    k = m.shape[0]
    cols = min(4, k)
    rows = math.ceil(k / cols)
    fig = Figure(figsize=(2.6 * cols, 2.5 * rows), dpi=100, layout="constrained")
    for i in range(k):
        ax = fig.add_subplot(rows, cols, i + 1)
        _draw_matrix(ax, m[i], ["neg", "pos"], ["neg", "pos"], colorbar=False)
        ax.set_title(str(class_names[i]), fontsize="medium")
        ax.set_xlabel("predicted", fontsize="small")
        ax.set_ylabel("true", fontsize="small")
    return _png_bytes(fig)


def _draw_matrix(ax: Any, m: np.ndarray, rows: list[str], cols: list[str], colorbar: bool = True) -> None:
    im = ax.imshow(m, cmap="Blues", interpolation="nearest", vmin=0)
    k_rows, k_cols = m.shape
    ax.set_xticks(
        range(k_cols),
        [str(c) for c in cols],
        rotation=45 if k_cols > 4 else 0,
        ha="right" if k_cols > 4 else "center",
    )
    ax.set_yticks(range(k_rows), [str(r) for r in rows])
    if max(m.shape) <= _ANNOTATE_UP_TO:
        high = m.max() / 2 if m.max() > 0 else 1
        size = "medium" if max(m.shape) <= 10 else "x-small"
        for i in range(k_rows):
            for j in range(k_cols):
                color = "white" if m[i, j] > high else "black"
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", color=color, fontsize=size)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, shrink=0.8)


def reliability_png(bins: dict[str, Any], ece: float) -> bytes:
    """Reliability diagram (accuracy per confidence bin against the diagonal) above a count histogram.

    ``bins`` is the dict of :func:`medsight.metrics.classification.reliability_bins`.
    """
    try:
        edges = np.asarray(bins["edges"], dtype=np.float64)
        acc = np.asarray(bins["accuracy"], dtype=np.float64)
        conf = np.asarray(bins["confidence"], dtype=np.float64)
        count = np.asarray(bins["count"], dtype=np.float64)
    except KeyError as exc:
        raise DataError(f"bins: expected keys edges, accuracy, confidence, count; missing {exc}") from None
    if not (edges.size == acc.size + 1 == conf.size + 1 == count.size + 1) or acc.size == 0:
        raise DataError(
            f"bins: expected n+1 edges and n values per key, got {edges.size} edges, {acc.size} values"
        )
    from matplotlib.figure import Figure

    centers, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    filled = count > 0
    fig = Figure(figsize=(5.0, 5.6), dpi=100, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], linestyle="--", color="0.5", linewidth=1, label="perfect calibration")
    top.bar(
        centers[filled], acc[filled], width=widths[filled], edgecolor="black", alpha=0.75, label="accuracy"
    )
    top.plot(
        conf[filled],
        acc[filled],
        marker="o",
        markersize=3,
        color="tab:red",
        linewidth=1,
        label="accuracy at mean confidence",
    )
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(f"reliability (ECE {ece:.3f})" if math.isfinite(ece) else "reliability")
    top.legend(loc="upper left", fontsize="small")
    bottom.bar(centers, count, width=widths, edgecolor="black", color="0.6")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("count")
    return _png_bytes(fig)


def write_classification_plots(
    folder: str | Path,
    y: np.ndarray,
    probs: np.ndarray,
    problem: str,
    class_names: list[str],
    thresholds: list[float] | None = None,
) -> list[Path]:
    """Write ``roc.png``, ``confusion.png`` and ``reliability.png`` into ``folder`` (atomically).

    The confusion matrix uses :func:`predict_labels` with ``thresholds``; returns the written paths.
    """
    yy, p = _check_inputs(y, probs, problem)
    pred = predict_labels(p, problem, thresholds)
    bins = reliability_bins(yy, p, problem)
    pngs = {
        "roc.png": roc_png(yy, p, problem, class_names),
        "confusion.png": confusion_png(confusion_matrix(yy, pred, p.shape[1]), class_names),
        "reliability.png": reliability_png(bins, expected_calibration_error(yy, p, problem)),
    }
    folder = Path(folder)
    return [
        atomic_write(folder / name, lambda tmp, data=data: tmp.write_bytes(data))
        for name, data in pngs.items()
    ]
