"""ROC, confusion and reliability PNGs of a classification evaluation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.errors import DataError
from medsight.metrics.classification import confusion_matrix, reliability_bins
from medsight.report.classification_plots import (
    confusion_png,
    reliability_png,
    roc_png,
    write_classification_plots,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _decode(png: bytes) -> np.ndarray:
    assert png[:8] == PNG_MAGIC
    with PILImage.open(io.BytesIO(png)) as im:
        assert im.format == "PNG"
        arr = np.asarray(im.convert("RGB"))
    h, w = arr.shape[:2]
    assert 200 <= h <= 2000 and 200 <= w <= 2000, (h, w)
    assert arr.std() > 5  # something was drawn, not a blank canvas
    return arr


_CYCLE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]  # matplotlib's default line colours
_BLUES_DARK = "#08306b"  # the top of the "Blues" colour map


def _mask_of(arr: np.ndarray, hex_colour: str, tol: int = 30) -> np.ndarray:
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return np.abs(arr.astype(int) - rgb).sum(axis=-1) < tol


def _pixels_of(arr: np.ndarray, hex_colour: str, tol: int = 30) -> int:
    return int(_mask_of(arr, hex_colour, tol).sum())


def test_roc_curve_of_a_perfect_classifier_hugs_the_top_left() -> None:
    y = np.array([0, 1] * 20)
    perfect = np.stack([1.0 - y, y.astype(float)], axis=1) * 0.8 + 0.1
    rng = np.random.default_rng(8)
    p = rng.random(40)
    random = np.stack([1 - p, p], axis=1)
    rows = []
    for probs in (perfect, random):
        curve = _mask_of(_decode(roc_png(y, probs, "binary", ["neg", "pos"])), _CYCLE[0])
        assert curve.sum() > 100
        rows.append(np.nonzero(curve)[0].mean() / curve.shape[0])
    assert rows[0] < rows[1] - 0.1  # along the left and top edges, not along the diagonal


def test_confusion_png_puts_the_counts_in_their_cells() -> None:
    correlations = []
    for m in (np.array([[20, 0], [0, 20]]), np.array([[0, 20], [20, 0]])):
        dark = _mask_of(_decode(confusion_png(m, ["a", "b"])), _BLUES_DARK, tol=60)
        rows, cols = np.nonzero(dark)
        assert rows.size > 100
        correlations.append(np.corrcoef(rows, cols)[0, 1])
    assert correlations[0] > 0.5 and correlations[1] < -0.5  # diagonal cells dark, then anti-diagonal


def _softmax(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.5
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def test_roc_png_per_problem() -> None:
    y, p = _softmax(60, 3)
    _decode(roc_png(y, p, "multiclass", ["a", "b", "c"]))
    yb, pb = _softmax(40, 2, seed=1)
    _decode(roc_png(yb, pb, "binary", ["neg", "pos"]))
    rng = np.random.default_rng(2)
    yl = (rng.random((40, 3)) < 0.5).astype(int)
    yl[:, 2] = 1  # a label with one value only: listed without a curve, no error
    _decode(roc_png(yl, rng.random((40, 3)), "multilabel", ["x", "y", "z"]))


def test_confusion_png_square_and_multilabel_grid() -> None:
    y, p = _softmax(80, 4, seed=3)
    m = confusion_matrix(y, p.argmax(axis=1), 4)
    square = _decode(confusion_png(m, ["a", "b", "c", "d"]))
    rng = np.random.default_rng(4)
    yl = (rng.random((30, 6)) < 0.5).astype(int)
    grid = _decode(
        confusion_png(confusion_matrix(yl, (rng.random((30, 6)) < 0.5).astype(int), 6), list("uvwxyz"))
    )
    assert grid.shape[1] > grid.shape[0]  # 4 columns x 2 rows of 2x2 panels
    assert square.shape[0] > 200
    with pytest.raises(DataError, match="class_names"):
        confusion_png(m, ["a", "b"])
    with pytest.raises(DataError, match="matrix"):
        confusion_png(np.zeros((2, 3)), ["a", "b"])


def test_reliability_png() -> None:
    y, p = _softmax(100, 3, seed=5)
    bins = reliability_bins(y, p, "multiclass", n_bins=10)
    arr = _decode(reliability_png(bins, 0.123))
    assert arr.shape[0] > arr.shape[1]  # diagram above histogram
    with pytest.raises(DataError, match="bins"):
        reliability_png({"edges": [0, 1]}, 0.1)


@pytest.mark.parametrize(
    ("problem", "k"), [("binary", 2), ("multiclass", 3), ("ordinal", 4), ("multilabel", 3)]
)
def test_write_classification_plots(tmp_path, problem: str, k: int) -> None:
    if problem == "multilabel":
        rng = np.random.default_rng(6)
        y = (rng.random((50, k)) < 0.4).astype(int)
        p = np.clip(0.4 + 0.3 * (y - 0.4) + rng.normal(0, 0.2, (50, k)), 0, 1)
        thresholds = [0.45] * k
    else:
        y, p = _softmax(50, k, seed=7)
        thresholds = [0.4] if problem == "binary" else None
    out = tmp_path / "plots"
    paths = write_classification_plots(out, y, p, problem, [f"c{i}" for i in range(k)], thresholds)
    assert [q.name for q in paths] == ["roc.png", "confusion.png", "reliability.png"]
    assert sorted(q.name for q in out.iterdir()) == ["confusion.png", "reliability.png", "roc.png"]  # no temp
    roc, confusion, reliability = (_decode(q.read_bytes()) for q in paths)
    curves = 1 if problem == "binary" else k  # one ROC curve per class (the positive one for binary)
    assert [_pixels_of(roc, c) > 30 for c in _CYCLE[: curves + 1]] == [True] * curves + [False]
    assert _pixels_of(confusion, _BLUES_DARK, tol=60) > 100  # the largest counts are drawn dark blue
    assert _pixels_of(reliability, "#d62728") > 30  # the tab:red confidence curve
