"""Known-answer tests of medsight.metrics.segmentation against hand-computed cases, scipy and sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import confusion_matrix, f1_score, jaccard_score, roc_auc_score

from medsight.errors import ConfigError, DataError
from medsight.metrics import case_metrics, pixel_metrics, segmentation_metrics, thresholded_jaccard
from medsight.metrics.segmentation import dice_coefficient

# ------------------------------------------------------------------ an independent surface-distance reference


def _surface(mask: np.ndarray) -> np.ndarray:
    """Foreground voxels with a face-neighbour outside the mask (the image border counts as outside)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _directed(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Distance (mm) from each surface voxel of a to the nearest surface voxel of b, via scipy's EDT."""
    return ndimage.distance_transform_edt(~_surface(b), sampling=spacing)[_surface(a)]


def _reference_surface_metrics(p: np.ndarray, r: np.ndarray, spacing: tuple[float, ...], tol: float) -> dict:
    d_pr, d_rp = _directed(p, r, spacing), _directed(r, p, spacing)
    both = np.concatenate([d_pr, d_rp])
    return {
        "hd95": max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)),
        "asd": both.mean(),
        "nsd": np.mean(both <= tol),
    }


def _blob(shape: tuple[int, ...], seed: int, sigma: float = 2.0, level: float = 0.52) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), sigma) > level


@pytest.fixture()
def blobs3d() -> tuple[np.ndarray, np.ndarray]:
    ref = _blob((22, 20, 14), seed=1)
    pred = np.roll(ref, 1, axis=0) ^ (_blob((22, 20, 14), seed=2, sigma=1.0, level=0.6) & ~ref)
    assert ref.any() and pred.any() and (ref != pred).any()
    return pred, ref


# --------------------------------------------------------------------------------------- hand-computed cases


def test_hand_computed_2d_case() -> None:
    ref = np.zeros((5, 5), bool)
    ref[0, 0] = True
    pred = ref.copy()
    pred[0, 3] = True  # pred -> ref distances [0, 3]; ref -> pred distances [0]
    m = segmentation_metrics(pred, ref, spacing=(1.0, 1.0), tolerance_mm=1.0)
    assert m["dice"] == pytest.approx(2 / 3)
    assert m["iou"] == pytest.approx(1 / 2)
    assert m["sensitivity"] == 1.0
    assert m["precision"] == 0.5
    assert m["specificity"] == pytest.approx(23 / 24)
    assert m["volume_diff"] == pytest.approx(1.0)
    assert m["abs_volume_diff"] == pytest.approx(1.0)
    assert m["hd95"] == pytest.approx(2.85)  # max(95th pct of [0, 3] = 2.85, 95th pct of [0] = 0)
    assert m["asd"] == pytest.approx(1.0)  # (0 + 3 + 0) / 3
    assert m["nsd"] == pytest.approx(2 / 3)  # 2 of the 3 surface points within 1 mm


def test_spacing_scales_distances_and_volumes() -> None:
    ref = np.zeros((7, 9), bool)
    pred = np.zeros((7, 9), bool)
    ref[3, 3] = True
    pred[3, 6] = True  # three columns apart, 2 mm per column: 6 mm
    m = segmentation_metrics(pred, ref, spacing=(0.5, 2.0), tolerance_mm=5.9)
    assert m["hd95"] == pytest.approx(6.0)
    assert m["asd"] == pytest.approx(6.0)
    assert m["nsd"] == 0.0
    assert segmentation_metrics(pred, ref, spacing=(0.5, 2.0), tolerance_mm=6.0)["nsd"] == 1.0
    big = np.zeros((7, 9), bool)
    big[1:4, 1:5] = True  # 12 pixels of 1 mm^2 vs 1 reference pixel
    v = segmentation_metrics(big, ref, spacing=(0.5, 2.0))
    assert v["abs_volume_diff"] == pytest.approx(11.0)
    assert v["volume_diff"] == pytest.approx(11.0)


def test_isotropic_scalar_spacing_equals_tuple(blobs3d: tuple[np.ndarray, np.ndarray]) -> None:
    pred, ref = blobs3d
    assert segmentation_metrics(pred, ref, spacing=1.5) == segmentation_metrics(pred, ref, spacing=(1.5,) * 3)


# ---------------------------------------------------------------------------- against independent references


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 1.2, 3.0)])
def test_3d_surface_metrics_match_scipy_edt(blobs3d: tuple[np.ndarray, np.ndarray], spacing) -> None:
    pred, ref = blobs3d
    m = segmentation_metrics(pred, ref, spacing=spacing, tolerance_mm=2.0)
    expected = _reference_surface_metrics(pred, ref, spacing, tol=2.0)
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, rel=1e-5, abs=1e-5), key


def test_2d_surface_metrics_match_scipy_edt() -> None:
    ref, pred = _blob((40, 36), seed=3), _blob((40, 36), seed=4)
    spacing = (0.7, 1.3)
    m = segmentation_metrics(pred, ref, spacing=spacing, tolerance_mm=1.5)
    expected = _reference_surface_metrics(pred, ref, spacing, tol=1.5)
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, rel=1e-5, abs=1e-5), key


def test_overlap_matches_sklearn(blobs3d: tuple[np.ndarray, np.ndarray]) -> None:
    pred, ref = blobs3d
    m = segmentation_metrics(pred, ref)
    y, yhat = ref.ravel(), pred.ravel()
    tn, fp, fn, tp = confusion_matrix(y, yhat).ravel()
    assert m["dice"] == pytest.approx(f1_score(y, yhat))
    assert m["iou"] == pytest.approx(jaccard_score(y, yhat))
    assert m["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert m["precision"] == pytest.approx(tp / (tp + fp))
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["volume_diff"] == pytest.approx((pred.sum() - ref.sum()) / ref.sum())


def test_matches_monai_public_functions(blobs3d: tuple[np.ndarray, np.ndarray]) -> None:
    import torch
    from monai.metrics import (
        compute_average_surface_distance,
        compute_hausdorff_distance,
        compute_surface_dice,
    )

    pred, ref = blobs3d
    spacing = (0.8, 1.2, 3.0)
    yp = torch.from_numpy(pred)[None, None].float()
    yr = torch.from_numpy(ref)[None, None].float()
    kw = {"include_background": True, "spacing": spacing}
    m = segmentation_metrics(pred, ref, spacing=spacing, tolerance_mm=2.0)
    assert m["hd95"] == pytest.approx(
        compute_hausdorff_distance(yp, yr, percentile=95, **kw).item(), rel=1e-5
    )
    assert m["asd"] == pytest.approx(
        compute_average_surface_distance(yp, yr, symmetric=True, **kw).item(), rel=1e-5
    )
    assert m["nsd"] == pytest.approx(compute_surface_dice(yp, yr, [2.0], **kw).item(), rel=1e-5)


# -------------------------------------------------------------------------------------------- conventions


def test_both_empty_is_perfect_agreement() -> None:
    empty = np.zeros((6, 6, 4), bool)
    m = segmentation_metrics(empty, empty)
    assert (m["dice"], m["iou"], m["nsd"], m["hd95"], m["asd"]) == (1.0, 1.0, 1.0, 0.0, 0.0)
    assert (m["volume_diff"], m["abs_volume_diff"], m["specificity"]) == (0.0, 0.0, 1.0)
    assert math.isnan(m["sensitivity"]) and math.isnan(m["precision"])


@pytest.mark.parametrize("empty_side", ["pred", "ref"])
def test_one_empty_gets_the_image_diagonal(empty_side: str) -> None:
    mask = np.zeros((6, 8, 4), bool)
    mask[2:4, 2:5, 1:3] = True
    empty = np.zeros_like(mask)
    pred, ref = (empty, mask) if empty_side == "pred" else (mask, empty)
    spacing = (1.0, 0.5, 2.0)
    m = segmentation_metrics(pred, ref, spacing=spacing)
    diagonal = math.sqrt(6.0**2 + 4.0**2 + 8.0**2)
    assert m["hd95"] == pytest.approx(diagonal) and m["asd"] == pytest.approx(diagonal)
    assert (m["dice"], m["iou"], m["nsd"]) == (0.0, 0.0, 0.0)
    assert m["abs_volume_diff"] == pytest.approx(12 * 1.0)
    if empty_side == "pred":
        assert m["volume_diff"] == -1.0 and m["sensitivity"] == 0.0 and math.isnan(m["precision"])
    else:
        assert math.isnan(m["volume_diff"]) and math.isnan(m["sensitivity"]) and m["precision"] == 0.0


def test_dice_coefficient_known_answers() -> None:
    """The one Dice of medsight: validation, robustness and the reported metrics call it."""
    empty = np.zeros((4, 5), bool)
    square = np.zeros((4, 5), bool)
    square[1:3, 1:3] = True  # 4 pixels
    shifted = np.roll(square, 1, axis=1)  # 4 pixels, 2 of them shared with the square
    assert dice_coefficient(empty, empty) == 1.0  # nothing to find, nothing found: perfect agreement
    assert dice_coefficient(square, empty) == 0.0 and dice_coefficient(empty, square) == 0.0
    assert dice_coefficient(square, shifted) == pytest.approx(2 * 2 / (4 + 4))
    assert dice_coefficient(square, square) == 1.0
    assert dice_coefficient(square, shifted) == f1_score(shifted.ravel(), square.ravel())
    assert dice_coefficient(square, shifted) == segmentation_metrics(square, shifted)["dice"]
    assert dice_coefficient(empty, empty) == segmentation_metrics(empty, empty)["dice"]


def test_dice_coefficient_reads_numbers_torch_tensors_and_any_shape() -> None:
    import torch

    labels = np.array([0, 2, 2, 0, 1])  # non-zero is foreground
    assert dice_coefficient(labels, [0, 1, 0, 0, 0]) == pytest.approx(2 * 1 / (3 + 1))
    pred = torch.zeros(2, 3, 4, 5, dtype=torch.bool)
    pred[0, 0, 0, :2] = True
    assert dice_coefficient(pred, pred.numpy()) == 1.0 and dice_coefficient(pred, ~pred) == 0.0
    with pytest.raises(DataError, match=r"pred: shape \(2,\) does not match ref \(3,\)"):
        dice_coefficient([1, 0], [1, 0, 0])


def test_roi_restricts_evaluation() -> None:
    ref = np.zeros((6, 6), bool)
    ref[1:3, 1:3] = True
    pred = ref.copy()
    pred[5, 5] = True  # a false positive outside the ROI
    roi = np.zeros((6, 6), bool)
    roi[:4, :4] = True
    m = segmentation_metrics(pred, ref, roi=roi)
    assert m["dice"] == 1.0 and m["hd95"] == 0.0 and m["specificity"] == 1.0
    assert segmentation_metrics(pred, ref)["specificity"] == pytest.approx(31 / 32)
    with pytest.raises(DataError, match="roi"):
        segmentation_metrics(pred, ref, roi=np.zeros((6, 6), bool))


def test_integer_masks_are_accepted() -> None:
    ref = _blob((20, 20), seed=5)
    expected = segmentation_metrics(ref, ref)
    assert segmentation_metrics(ref.astype(np.uint8), ref.astype(np.int64)) == expected
    assert segmentation_metrics(ref.astype(np.uint8) * 255, ref, roi=np.full(ref.shape, 255)) == expected


@pytest.mark.parametrize(
    ("pred", "ref", "kwargs", "error", "match"),
    [
        (
            np.zeros((4, 4), bool),
            np.zeros((4, 5), bool),
            {},
            DataError,
            r"pred: shape \(4, 4\) does not match",
        ),
        (
            np.arange(16).reshape(4, 4),
            np.zeros((4, 4), bool),
            {},
            DataError,
            r"pred: expected a binary mask.*15",
        ),
        (np.zeros(4, bool), np.zeros(4, bool), {}, DataError, "2D or 3D"),
        (np.zeros((4, 4), bool), np.zeros((4, 4), bool), {"spacing": (1, 1, 1)}, DataError, "spacing"),
        (np.zeros((4, 4), bool), np.zeros((4, 4), bool), {"spacing": (1, 0)}, DataError, "spacing"),
        (np.zeros((4, 4), bool), np.zeros((4, 4), bool), {"tolerance_mm": -1}, ConfigError, "tolerance_mm"),
    ],
)
def test_bad_input_raises(pred, ref, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        segmentation_metrics(pred, ref, **kwargs)


# ---------------------------------------------------------------------------------------------- case_metrics


def test_case_metrics_classes_and_regions() -> None:
    rng = np.random.default_rng(0)
    ref = rng.choice([0, 1, 2, 4], size=(12, 10, 6), p=[0.7, 0.1, 0.1, 0.1])
    pred = np.where(rng.random(ref.shape) < 0.2, rng.choice([0, 1, 2, 4], size=ref.shape), ref)
    classes = {"necrosis": 1, "WT": [1, 2, 4], "TC": (1, 4)}
    rows = case_metrics(pred, ref, classes, spacing=(1.0, 1.0, 2.0))
    assert [r["class"] for r in rows] == ["necrosis", "WT", "TC"]
    for row, values in zip(rows, [[1], [1, 2, 4], [1, 4]], strict=True):
        p, r = np.isin(pred, values), np.isin(ref, values)
        assert row["dice"] == pytest.approx(f1_score(r.ravel(), p.ravel()))
        expected = segmentation_metrics(p, r, spacing=(1.0, 1.0, 2.0))
        assert {k: v for k, v in row.items() if k != "class"} == expected


def test_case_metrics_bad_input() -> None:
    a = np.zeros((4, 4), int)
    with pytest.raises(DataError, match="pred_labels"):
        case_metrics(a, np.zeros((4, 3), int), {"x": 1})
    with pytest.raises(ConfigError, match=r"classes\['x'\]"):
        case_metrics(a, a, {"x": 1.5})
    with pytest.raises(ConfigError, match="classes"):
        case_metrics(a, a, {})


# -------------------------------------------------------------------------------------- pixel metrics, ISIC


def test_pixel_metrics_known_auc() -> None:
    prob = np.array([[0.1, 0.4], [0.35, 0.8]])
    ref = np.array([[0, 0], [1, 1]], bool)
    m = pixel_metrics(prob, ref)
    assert m["auc"] == pytest.approx(0.75)  # the classic sklearn roc_auc_score example
    assert m["accuracy"] == pytest.approx(0.75)  # only 0.35 is misclassified at 0.5
    assert (m["sensitivity"], m["specificity"], m["precision"]) == (0.5, 1.0, 1.0)
    assert m["f1"] == pytest.approx(2 / 3)


def test_pixel_metrics_match_sklearn_inside_roi() -> None:
    rng = np.random.default_rng(1)
    ref = _blob((30, 28), seed=6, sigma=1.0, level=0.55)
    prob = np.clip(ref * 0.6 + rng.random(ref.shape) * 0.6, 0, 1)
    yy, xx = np.mgrid[:30, :28]
    roi = (yy - 15) ** 2 + (xx - 14) ** 2 < 12**2
    prob_outside = prob.copy()
    prob_outside[~roi] = 1 - prob_outside[~roi]  # changing pixels outside the FOV must not matter
    m = pixel_metrics(prob_outside, ref, roi=roi, threshold=0.6)
    y, s = ref[roi], prob[roi]
    tn, fp, fn, tp = confusion_matrix(y, s >= 0.6).ravel()
    assert m["auc"] == pytest.approx(roc_auc_score(y, s))
    assert m["accuracy"] == pytest.approx((tp + tn) / y.size)
    assert m["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["f1"] == pytest.approx(f1_score(y, s >= 0.6))


def test_pixel_metrics_edge_cases() -> None:
    ref = np.zeros((3, 3), bool)
    assert math.isnan(pixel_metrics(np.zeros((3, 3)), ref)["auc"])  # one class only: AUC undefined
    with pytest.raises(DataError, match="NaN"):
        pixel_metrics(np.full((3, 3), np.nan), ref)
    with pytest.raises(DataError, match="prob: shape"):
        pixel_metrics(np.zeros((3, 4)), ref)
    with pytest.raises(DataError, match="roi"):
        pixel_metrics(np.zeros((3, 3)), ref, roi=np.zeros((3, 3), bool))


def test_thresholded_jaccard() -> None:
    assert thresholded_jaccard([0.9, 0.6, 0.7, float("nan")]) == pytest.approx((0.9 + 0.0 + 0.7) / 3)
    assert thresholded_jaccard([0.65, 0.64]) == pytest.approx(0.65 / 2)
    assert thresholded_jaccard([0.5], threshold=0.4) == 0.5
    assert math.isnan(thresholded_jaccard([]))
