"""The numpy post-processing against MONAI's own anchors, box coder and output order; NMS; geometry;
augmentation moving boxes with the image."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from medsight.tasks.detect.postprocess import (
    anchors,
    class_nms,
    decode,
    select,
    to_image_boxes,
    to_input_boxes,
)


def _plan(dim: int, **kw: object) -> SimpleNamespace:
    shapes = [[12.0, 6.0], [9.0, 9.0]] if dim == 2 else [[8.0, 6.0, 4.0], [10.0, 10.0, 6.0]]
    base = {
        "dim": dim,
        "strides": [8, 16, 32],
        "anchor_shapes": shapes,
        "input_size": [64, 96][:dim] if dim == 2 else [64, 32, 32],
        "class_names": ["a", "b"],
        "score_threshold": 0.05,
        "nms_threshold": 0.5,
        "topk_candidates": 1000,
        "max_detections": 100,
    }
    return SimpleNamespace(**{**base, **kw})


@pytest.mark.parametrize("dim", [2, 3])
def test_anchors_equal_monai(dim: int) -> None:
    from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape

    plan = _plan(dim)
    gen = AnchorGeneratorWithAnchorShape(feature_map_scales=[1, 2, 4], base_anchor_shapes=plan.anchor_shapes)
    image = torch.zeros(1, 1, *plan.input_size)
    maps = [torch.zeros(1, 1, *[s // st for s in plan.input_size]) for st in plan.strides]
    np.testing.assert_array_equal(anchors(plan), gen(image, maps)[0].numpy())


def test_decode_equals_monai_box_coder() -> None:
    from monai.apps.detection.utils.box_coder import BoxCoder

    rng = np.random.default_rng(0)
    ref = np.concatenate([rng.uniform(0, 50, (20, 3)), rng.uniform(60, 100, (20, 3))], axis=1).astype(
        np.float32
    )
    codes = rng.normal(0, 1, (20, 6)).astype(np.float32)
    codes[0, 3] = 9.0  # clipped exponent
    want = BoxCoder(weights=(1.0,) * 6).decode_single(torch.from_numpy(codes), torch.from_numpy(ref)).numpy()
    np.testing.assert_allclose(decode(codes, ref), want, rtol=1e-6, atol=1e-4)


def test_network_output_order_equals_monai_reshape() -> None:
    from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector

    from medsight.models.detection import flatten_levels

    maps = [torch.randn(2, 3 * 5, 4, 6), torch.randn(2, 3 * 5, 2, 3)]
    fake = SimpleNamespace(num_anchors_per_loc=3, spatial_dims=2)
    want = RetinaNetDetector._reshape_maps(fake, maps)
    torch.testing.assert_close(flatten_levels(maps, 3, 2), want)


def test_class_nms_known_answer() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 9]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.95])
    labels = np.array([0, 0, 1, 0, 0])
    # 4 (0.95) suppresses 0 (IoU 0.9) and 1 (IoU 0.74); 2 is another class; 3 overlaps nothing
    assert class_nms(boxes, scores, labels, 0.5).tolist() == [4, 2, 3]


def test_select_thresholds_clips_and_caps() -> None:
    plan = _plan(2, max_detections=2)
    a = anchors(plan)
    out = np.full((len(a), 2 + 4), -10.0, np.float32)
    out[:, 2:] = 0.0  # boxes = anchors
    out[[0, 50, 100], 0] = [3.0, 2.0, 1.0]  # three separate confident anchors of class 0
    found = select(out, a, plan)
    assert found["scores"].tolist() == pytest.approx([1 / (1 + np.exp(-3.0)), 1 / (1 + np.exp(-2.0))])
    assert found["boxes"].min() >= 0 and (found["boxes"][:, 2:] <= np.array(plan.input_size)).all()
    assert found["labels"].tolist() == [0, 0]


def test_image_and_input_boxes_round_trip() -> None:
    coords = np.array([[10.0, 20.0, 30.0, 60.0]])  # x = column on a 100 (rows) x 200 (columns) image
    on_input = to_input_boxes(coords, [50, 64], (100, 200))
    np.testing.assert_allclose(on_input, [[10.0, 3.2, 30.0, 9.6]])  # rows first, scaled per axis
    np.testing.assert_allclose(to_image_boxes(on_input, [50, 64], (100, 200)), coords)


def test_augmentation_moves_boxes_with_the_image() -> None:
    from medsight.tasks.detect.pipeline import augment

    x = torch.zeros(6, 1, 64, 64)
    x[:, :, 10:30, 20:50] = 1.0  # rows 10..29, columns 20..49
    boxes = [torch.tensor([[10.0, 20.0, 30.0, 50.0]])] * 6
    labels = [torch.tensor([1])] * 6
    out, moved, kept = augment(x, boxes, labels, [0, 1], torch.Generator().manual_seed(3))
    for img, b in zip(out, moved, strict=True):
        assert len(b) == 1
        rows, cols = np.nonzero(img[0].numpy() > 0.5 + 0.1)  # the jitter scales by at most 10 %
        found = [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]
        np.testing.assert_allclose(found, b[0].numpy(), atol=1.5)
    assert all(k.tolist() == [1] for k in kept)
