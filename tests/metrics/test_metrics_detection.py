"""Known-answer tests of medsight.metrics.detection: pycocotools' COCOeval, hand-computed AP / IoU / FROC,
the bootstrap, per-image rows and input errors."""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any

import numpy as np
import pytest

from medsight.data.spec import Boxes
from medsight.errors import ConfigError, DataError, ShapeError
from medsight.metrics import MetricTable
from medsight.metrics import detection as det
from medsight.metrics.detection import (
    box_iou,
    coco_map,
    detection_rows,
    detection_summary,
    froc,
    xywh_to_xyxy,
    xyxy_to_xywh,
)

Scene = tuple[list[dict[str, Any]], list[dict[str, Any]]]

# ------------------------------------------------------------------------------------------ scenes


def _boxes(rng: np.random.Generator, n: int, lo: float = 5, hi: float = 60) -> np.ndarray:
    xy = rng.uniform(0, 200, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(lo, hi, (n, 2))], axis=1)


def _scene(seed: int, n_images: int = 14, n_classes: int = 3) -> Scene:
    """Jittered true positives, duplicates, false positives, missed boxes, a negative image, tied scores."""
    rng = np.random.default_rng(seed)
    preds, refs = [], []
    for i in range(n_images):
        n = 0 if i == 0 else int(rng.integers(1, 6))
        gt, gl = _boxes(rng, n), rng.integers(0, n_classes, n)
        found = rng.random(n) > 0.25  # the others are missed
        jit = gt[found] + rng.normal(0, 5, (int(found.sum()), 4))
        jit[:, 2:] = np.maximum(jit[:, 2:], jit[:, :2] + 1)
        dup = jit[:1] + rng.normal(0, 3, (min(1, len(jit)), 4))
        dup[:, 2:] = np.maximum(dup[:, 2:], dup[:, :2] + 1)
        n_fp = int(rng.integers(1, 4))
        boxes = np.concatenate([jit, dup, _boxes(rng, n_fp)])
        labels = np.concatenate([gl[found], gl[found][:1], rng.integers(0, n_classes, n_fp)])
        if i == 2 and len(labels):
            labels[-1] = (labels[-1] + 1) % n_classes  # a wrong class
        scores = rng.random(len(boxes)).round(2)  # rounded: ties within and across images
        preds.append({"boxes": boxes, "labels": labels, "scores": scores})
        refs.append({"boxes": gt, "labels": gl, "image_id": f"img{i:02d}"})
    return preds, refs


def _crowded_scene() -> Scene:
    """An image with 130 detections (maxDets 100 cuts some) and twin references (IoU ties)."""
    rng = np.random.default_rng(7)
    twin = np.array([[10.0, 10.0, 50.0, 50.0], [10.0, 10.0, 50.0, 50.0], [100.0, 100.0, 140.0, 130.0]])
    crowd = _boxes(rng, 130)
    crowd[:4] = twin[[0, 0, 2, 2]] + rng.normal(0, 2, (4, 4))
    scores = rng.random(130)
    scores[:4] = [0.05, 0.04, 0.03, 0.02]  # the true positives rank below the cut at 100
    preds = [
        {"boxes": crowd, "labels": np.zeros(130, int), "scores": scores},
        {"boxes": twin + 1.0, "labels": [0, 0, 1], "scores": [0.9, 0.9, 0.8]},
    ]
    refs = [{"boxes": twin, "labels": [0, 0, 0]}, {"boxes": twin, "labels": [0, 0, 1]}]
    return preds, refs


# ------------------------------------------------------------------------------------ pycocotools


def _cocoeval(preds: list[dict[str, Any]], refs: list[dict[str, Any]], n_classes: int) -> tuple[Any, Any]:
    """COCOeval on the scene, built in memory; returns (stats, precision[T, R, K] at area all, 100)."""
    pytest.importorskip("pycocotools", reason="pycocotools is not installed (pip install pycocotools)")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    anns = []
    for i, r in enumerate(refs):
        for box, label in zip(xyxy_to_xywh(r["boxes"]), r["labels"], strict=True):
            area = float(box[2] * box[3])
            anns.append(
                {"image_id": i + 1, "category_id": int(label) + 1, "bbox": box.tolist(), "area": area}
            )
    for a, ann in enumerate(anns):
        ann.update(id=a + 1, iscrowd=0)  # ids from 1: COCOeval reads a match id of 0 as "unmatched"
    results = [
        {"image_id": i + 1, "category_id": int(label) + 1, "bbox": box.tolist(), "score": float(score)}
        for i, p in enumerate(preds)
        for box, label, score in zip(xyxy_to_xywh(p["boxes"]), p["labels"], p["scores"], strict=True)
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        images = [{"id": i + 1} for i in range(len(refs))]
        gt.dataset = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": k + 1} for k in range(n_classes)],
        }
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats, ev.eval["precision"][:, :, :, 0, -1]


def _assert_equals_cocoeval(preds: list[dict[str, Any]], refs: list[dict[str, Any]], n_classes: int) -> None:
    stats, precision = _cocoeval(preds, refs, n_classes)
    ours = coco_map(preds, refs, num_classes=n_classes)
    assert ours["map_50_95"] == pytest.approx(stats[0], abs=1e-6)
    assert ours["map_50"] == pytest.approx(stats[1], abs=1e-6)
    for k in range(n_classes):
        p = precision[:, :, k]
        if (p == -1).all():  # no reference box of the class: COCO's -1, our NaN
            assert math.isnan(ours["ap_50_95"][k]) and math.isnan(ours["ap_50"][k])
        else:
            assert ours["ap_50_95"][k] == pytest.approx(p.mean(), abs=1e-6)
            assert ours["ap_50"][k] == pytest.approx(p[0].mean(), abs=1e-6)
            assert ours["ap_per_threshold"][k] == pytest.approx(p.mean(axis=1), abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_coco_map_equals_cocoeval_on_random_scenes(seed: int) -> None:
    preds, refs = _scene(seed)
    _assert_equals_cocoeval(preds, refs, 3)


def test_coco_map_equals_cocoeval_with_an_unreferenced_class_max_dets_and_iou_ties() -> None:
    preds, refs = _scene(11)
    preds[3] = {**preds[3], "labels": np.append(preds[3]["labels"][:-1], 3)}  # class 3: predicted only
    _assert_equals_cocoeval(preds, refs, 4)
    assert math.isnan(coco_map(preds, refs, num_classes=4)["ap_50"][3])
    _assert_equals_cocoeval(*_crowded_scene(), 2)


# -------------------------------------------------------------------------------- hand-computed AP


def _one_image(pred_boxes: list, scores: list, ref_boxes: list) -> Scene:
    pred = {"boxes": pred_boxes, "labels": [0] * len(pred_boxes), "scores": scores}
    return [pred], [{"boxes": ref_boxes, "labels": [0] * len(ref_boxes)}]


def test_perfect_predictions_score_exactly_one_in_2d_and_3d() -> None:
    for boxes in ([[0, 0, 10, 10], [20, 5, 30, 40]], [[0, 0, 0, 4, 4, 4], [5, 5, 5, 9, 8, 7]]):
        m = coco_map(*_one_image(boxes, [0.9, 0.8], boxes))
        assert m["map_50"] == 1.0 and m["map_50_95"] == 1.0 and m["ap_50"] == {0: 1.0}
    ref = Boxes(coords=np.array([[0, 0, 4, 4]]), labels=np.array([2]))  # the dataset's own box type
    assert coco_map([{"boxes": ref.coords, "labels": [2], "scores": [0.3]}], [ref])["ap_50"] == {2: 1.0}


def test_ap_of_ranked_hits_and_false_positives_by_hand() -> None:
    ref, tp, fp = [[0, 0, 10, 10]], [0, 0, 10, 10], [50, 50, 60, 60]
    # a false positive ranked above the only hit: precision 1/2 at recall 1, so 0.5 at every recall
    assert coco_map(*_one_image([tp, fp], [0.6, 0.9], ref))["map_50"] == 0.5
    assert coco_map(*_one_image([tp, fp], [0.9, 0.6], ref))["map_50"] == 1.0  # ranked below: no cost
    # TP, FP, TP on two references: precision 1 up to recall 0.5 (51 thresholds), then 2/3 (50)
    m = coco_map(*_one_image([tp, fp, [20, 0, 30, 10]], [0.9, 0.8, 0.7], [ref[0], [20, 0, 30, 10]]))
    assert m["map_50"] == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101, abs=1e-12)
    # a false positive on a negative image counts like one on the positive image
    hit = {"boxes": [tp], "labels": [0], "scores": [0.6]}
    false = {"boxes": [fp], "labels": [0], "scores": [0.9]}
    two = coco_map([hit, false], [{"boxes": ref, "labels": [0]}, {"boxes": [], "labels": []}])
    assert two["map_50"] == 0.5


def test_3d_iou_and_ap_per_threshold_of_a_cube_pair() -> None:
    a, b = [0, 0, 0, 2, 2, 2], [1, 0, 0, 3, 2, 2]
    assert box_iou([a], [b])[0, 0] == pytest.approx(4 / 12)  # overlap 1 x 2 x 2 of two 8-voxel cubes
    assert box_iou([[1, 1, 1, 3, 3, 3]], [a])[0, 0] == pytest.approx(1 / 15)
    assert box_iou([a], [[5, 5, 5, 6, 6, 6]])[0, 0] == 0.0
    pred, ref = [0, 0, 0, 3, 2, 2], [1, 0, 0, 3, 2, 2]  # IoU 8 / 12 = 2/3: a hit up to IoU 0.65
    m = coco_map(*_one_image([pred], [0.5], [ref]))
    assert m["ap_per_threshold"][0] == [1.0] * 4 + [0.0] * 6
    assert m["map_50"] == 1.0 and m["map_50_95"] == pytest.approx(0.4)


def test_iou_matches_the_2d_formula_and_the_converters_round_trip() -> None:
    rng = np.random.default_rng(0)
    a, b = _boxes(rng, 5), _boxes(rng, 4)
    lo, hi = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    np.testing.assert_allclose(box_iou(a, b), inter / (area(a)[:, None] + area(b)[None, :] - inter))
    assert box_iou(a, np.zeros((0, 4))).shape == (5, 0)
    assert box_iou([[1, 1, 1, 1]], [[1, 1, 1, 1]]).tolist() == [[0.0]]  # zero-size boxes overlap nothing
    assert xyxy_to_xywh([[1, 2, 3, 4, 6, 9]]).tolist() == [[1, 2, 3, 3, 4, 6]]
    np.testing.assert_allclose(xywh_to_xyxy(xyxy_to_xywh(a)), a)


def test_max_detections_keeps_the_highest_scored_per_image_and_class() -> None:
    ref = [[0, 0, 10, 10]]
    fps = [[20 + i, 20, 30 + i, 30] for i in range(100)]
    scene = _one_image([*fps, ref[0]], [0.9] * 100 + [0.1], ref)
    assert coco_map(*scene)["map_50"] == 0.0  # the hit is the 101st
    assert coco_map(*scene, max_detections=101)["map_50"] == pytest.approx(1 / 101)


def test_custom_iou_thresholds_and_inferred_classes() -> None:
    m = coco_map(*_one_image([[0, 0, 10, 10]], [0.5], [[0, 0, 10, 8]]), iou_thresholds=[0.75, 0.85])
    assert m["iou_thresholds"] == [0.75, 0.85] and m["ap_per_threshold"][0] == [1.0, 0.0]
    assert m["map_50"] == 1.0 and m["map_50_95"] == 0.5  # IoU 0.8; 0.5 is always reported
    assert list(m["ap_50"]) == [0]


# ----------------------------------------------------------------------------------------- FROC


def _froc_scene() -> Scene:
    """Refs A, B (found) and C (missed); a duplicate hit on A; one false positive per image."""
    a, b, c = [0, 0, 10, 10], [40, 40, 60, 60], [100, 0, 110, 10]
    preds = [
        {"boxes": [a, [1, 1, 10, 10], [200, 200, 210, 210]], "labels": [0, 0, 0], "scores": [0.9, 0.7, 0.8]},
        {"boxes": [[45, 45, 60, 60], [150, 150, 160, 160]], "labels": [1, 1], "scores": [0.6, 0.5]},
    ]
    refs = [{"boxes": [a, c], "labels": [0, 0]}, {"boxes": [b], "labels": [0]}]
    return preds, refs


def test_froc_by_hand() -> None:
    f = froc(*_froc_scene())  # found at 0.9 and 0.6; FPs at 0.8 and 0.5; the 0.7 duplicate ignored
    np.testing.assert_allclose(f["fps_per_image"], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(f["sensitivity"], [1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(f["thresholds"], [0.9, 0.6, 0.5])
    expected = [1 / 3 + 1 / 12, 1 / 2] + [2 / 3] * 5  # linear between (0, 1/3) and (0.5, 2/3)
    np.testing.assert_allclose(f["sensitivity_at"], expected)
    assert f["cpm"] == pytest.approx(51 / 84) and f["n_references"] == 3 and f["n_images"] == 2
    # with labels the hit on B (a class-1 detection on a class-0 lesion) becomes a false positive
    assert froc(*_froc_scene(), match_labels=True)["sensitivity_at"][-1] == pytest.approx(1 / 3)


def test_froc_hit_criteria_and_no_references() -> None:
    ref = [[0, 0, 100, 100]]
    small = _one_image([[45, 45, 55, 55]], [0.9], ref)  # IoU 0.01, centre inside
    assert froc(*small)["cpm"] == 0.0 and froc(*small)["fps_per_image"][-1] == 1.0
    assert froc(*small, criterion="center")["cpm"] == 1.0
    assert froc(*small, iou_threshold=0.01)["cpm"] == 1.0
    assert math.isnan(froc(*_one_image([[0, 0, 1, 1]], [0.5], []))["cpm"])


# ------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_the_point_value_and_is_seeded() -> None:
    preds, refs = _scene(3)
    s = detection_summary(preds, refs, ["a", "b", "c"], n_boot=200, seed=1)
    point = coco_map(preds, refs, num_classes=3)
    assert s["all"]["map_50"]["mean"] == pytest.approx(point["map_50"])
    assert s["all"]["map_50_95"]["mean"] == pytest.approx(point["map_50_95"])
    assert s["all"]["cpm"]["mean"] == pytest.approx(froc(preds, refs)["cpm"])
    assert s["per_class"]["b"]["ap_50"]["mean"] == pytest.approx(point["ap_50"][1])
    for stats in [*s["all"].values(), *(v for c in s["per_class"].values() for v in c.values())]:
        assert stats["ci_low"] <= stats["mean"] <= stats["ci_high"] and stats["n"] == len(refs)
    assert s["all"]["map_50"]["ci_low"] < s["all"]["map_50"]["ci_high"]
    assert detection_summary(preds, refs, ["a", "b", "c"], n_boot=200, seed=1) == s
    assert detection_summary(preds, refs, ["a", "b", "c"], n_boot=200, seed=2) != s
    table = MetricTable(rows=detection_rows(preds, refs), pooled=s)
    assert table.summary()["all"]["map_50"] == s["all"]["map_50"]


def test_bootstrap_weights_equal_duplicated_images() -> None:
    preds, refs = _scene(5)
    for p in preds:  # distinct scores: duplicating an image then adds no ties across images
        p["scores"] = p["scores"] + np.random.default_rng(len(p["scores"])).uniform(0, 1e-3, len(p["scores"]))
    weights = np.array([[0, 2, 1, 0, 3, 1, 1, 0, 2, 1, 0, 1, 1, 1]], dtype=float)
    copies = [i for i, w in enumerate(weights[0]) for _ in range(int(w))]
    dup_p, dup_r = [preds[i] for i in copies], [refs[i] for i in copies]
    thr, _, _ = det._thresholds(det.COCO_IOU_THRESHOLDS)
    parsed_p, parsed_r = det._parse(preds, refs)
    for c in range(3):
        ap = det._average_precision(det._match_class(parsed_p, parsed_r, c, thr, 100), weights)[0]
        assert ap == pytest.approx(coco_map(dup_p, dup_r, num_classes=3)["ap_per_threshold"][c], abs=1e-12)
    events = det._froc_events(parsed_p, parsed_r, "iou", 0.1, False)
    cpm = det._cpm(events, weights, np.asarray(det.FROC_FP_RATES))[0]
    np.testing.assert_allclose(cpm, froc(dup_p, dup_r)["sensitivity_at"])


# ------------------------------------------------------------------------------------ per-image rows


def test_detection_rows_by_hand() -> None:
    preds = [
        {"boxes": [[0, 0, 10, 10], [0, 0, 10, 5], [50, 50, 60, 60], [0, 0, 10, 10]],
         "labels": [0, 0, 0, 1], "scores": [0.9, 0.8, 0.7, 0.2]},
        {"boxes": [[0, 0, 4, 4]], "labels": [0], "scores": [0.9]},
    ]  # fmt: skip
    refs = [
        {"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "labels": [0, 0], "image_id": "a"},
        {"boxes": [], "labels": [], "image_id": "b"},
    ]
    row_a, row_b = detection_rows(preds, refs)
    # a: 3 kept detections (0.2 is below the score threshold), one hit, a duplicate, an FP, a miss
    assert row_a == {"case_id": "a", "n_ref": 2, "n_pred": 3, "tp": 1, "fp": 2, "fn": 1,
                     "precision": 1 / 3, "recall": 0.5, "mean_best_iou": 0.5}  # fmt: skip
    assert (row_b["case_id"], row_b["fp"], row_b["tp"], row_b["fn"]) == ("b", 1, 0, 0)
    assert math.isnan(row_b["recall"]) and math.isnan(row_b["mean_best_iou"])
    assert detection_rows(preds, refs, score_threshold=0.0)[0]["fp"] == 3  # wrong-class box counted


# ----------------------------------------------------------------------------------------- errors


def _good() -> Scene:
    return _one_image([[0, 0, 10, 10]], [0.9], [[0, 0, 10, 10]])


@pytest.mark.parametrize(
    ("side", "change", "error", "match"),
    [
        (
            "pred",
            {"boxes": [[0, 0, 10, 10, 3]]},
            ShapeError,
            r"predictions\[0\] \(image '0'\): boxes: expected shape",
        ),
        ("ref", {"boxes": [[0, 0, 10]]}, ShapeError, r"references\[0\].*boxes"),
        ("pred", {"boxes": [[10, 0, 5, 10]]}, DataError, r"predictions\[0\].*row 0 has x1 < x0"),
        ("ref", {"boxes": [[0, 0, 0, 4, 4, -1]]}, DataError, r"references\[0\].*row 0 has z1 < z0"),
        ("pred", {"boxes": [[0, np.nan, 10, 10]]}, DataError, r"predictions\[0\].*boxes.*NaN"),
        ("pred", {"scores": [0.9, 0.1]}, ShapeError, r"predictions\[0\].*scores: expected shape \(1,\)"),
        ("pred", {"scores": [np.nan]}, DataError, r"scores: expected finite"),
        ("ref", {"labels": [0, 1]}, ShapeError, r"references\[0\].*labels"),
        ("ref", {"labels": [0.5]}, DataError, r"labels: expected class ids"),
        ("pred", {"labels": [-1]}, DataError, r"labels: expected class ids"),
        ("pred", {"scores": None}, DataError, r"predictions\[0\].*missing field 'scores'"),
        ("ref", {"boxes": "abc"}, DataError, r"references\[0\].*boxes: expected numbers"),
    ],
)
def test_bad_boxes_labels_and_scores_name_the_image_and_field(
    side: str, change: dict[str, Any], error: type[Exception], match: str
) -> None:
    preds, refs = _good()
    target = preds if side == "pred" else refs
    target[0] = {**target[0], **change}
    with pytest.raises(error, match=match):
        coco_map(preds, refs)


def test_structural_errors() -> None:
    preds, refs = _good()
    with pytest.raises(DataError, match="missing field 'scores'"):
        coco_map([{"boxes": [[0, 0, 1, 1]], "labels": [0]}], refs)
    with pytest.raises(DataError, match="one entry per image"):
        coco_map(preds + preds, refs)
    with pytest.raises(DataError, match="at least one image"):
        coco_map([], [])
    with pytest.raises(ShapeError, match="image '1': boxes"):
        coco_map(preds * 2, [refs[0], {"boxes": [[0, 0, 0, 1, 1, 1]], "labels": [0]}])
    with pytest.raises(DataError, match=r"image 'x'.*class ids in \[0, 0\], found 2"):
        detection_summary(preds, [{**refs[0], "labels": [2], "image_id": "x"}], ["only"], n_boot=5)
    with pytest.raises(ConfigError, match="criterion"):
        froc(preds, refs, criterion="distance")
    with pytest.raises(ConfigError, match="iou_thresholds"):
        coco_map(preds, refs, iou_thresholds=[0.0, 0.5])
    with pytest.raises(ConfigError, match="n_boot"):
        detection_summary(preds, refs, ["a"], n_boot=0)
    with pytest.raises(DataError, match="sizes >= 0"):
        xywh_to_xyxy([[0, 0, -1, 2]])
