"""From the network's per-anchor outputs to boxes, in numpy: the one post-processing of the detect
family, used by the PyTorch predictor, validation and the torch-free ONNX runtime alike.

Steps (per image): MONAI's anchors for the plan's input size (:func:`anchors`, equal to
``AnchorGeneratorWithAnchorShape``), sigmoid class scores, candidates above ``plan.score_threshold``,
the ``plan.topk_candidates`` best, box decoding as MONAI's ``BoxCoder`` (weights 1, exp clipped at
log(1000/16)), clipping to the input, class-wise greedy NMS at ``plan.nms_threshold``, the
``plan.max_detections`` best. Boxes here are in array-axis order on the network's input grid;
:func:`to_image_boxes` maps them to the original image, in medsight's order (2D: x = column).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

BOX_CLIP = math.log(1000.0 / 16)  # MONAI BoxCoder's boxes_xform_clip
MIN_SIDE = 1e-3  # decoded boxes thinner than this (after clipping) are dropped


def anchors(plan: Any) -> np.ndarray:
    """``(A, 2 * dims)`` anchors (array order, input pixels) in the network's output order: levels
    finest first, locations in C order, then the anchor shapes (MONAI's ``AnchorGeneratorWithAnchorShape``
    with ``feature_map_scales = strides / strides[0]`` and ``base_anchor_shapes = plan.anchor_shapes``)."""
    dims = plan.dim
    shapes = np.asarray(plan.anchor_shapes, dtype=np.float64)
    out = []
    for stride in plan.strides:
        cell = np.round(np.concatenate([-shapes, shapes], axis=1) * (stride / plan.strides[0]) / 2.0)
        grid = [int(s) // stride for s in plan.input_size]
        centres = [np.arange(g) * stride + stride // 2 for g in grid]
        mesh = np.stack([m.reshape(-1) for m in np.meshgrid(*centres, indexing="ij")], axis=1)
        shifts = np.concatenate([mesh, mesh], axis=1).astype(np.float64)
        out.append((shifts[:, None, :] + cell[None, :, :]).reshape(-1, 2 * dims))
    return np.concatenate(out).astype(np.float32)


def decode(codes: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """MONAI ``BoxCoder.decode_single`` (weights 1): regression codes ``(N, 2d)`` on anchors ``(N, 2d)``."""
    d = reference.shape[1] // 2
    ref = reference.astype(np.float32)
    size = ref[:, d:] - ref[:, :d]
    centre = ref[:, :d] + 0.5 * size
    c = codes.astype(np.float32)
    pred_centre = c[:, :d] * size + centre
    pred_size = np.exp(np.minimum(c[:, d:], BOX_CLIP)) * size
    return np.concatenate([pred_centre - 0.5 * pred_size, pred_centre + 0.5 * pred_size], axis=1)


def select(output: np.ndarray, anchor_boxes: np.ndarray, plan: Any) -> dict[str, np.ndarray]:
    """One image's ``(A, K + 2d)`` network output -> ``{"boxes" (M, 2d) array order, "scores", "labels"}``."""
    k, d = len(plan.class_names), plan.dim
    scores = 1.0 / (1.0 + np.exp(-output[:, :k].astype(np.float64)))
    flat = scores.ravel()
    cand = np.flatnonzero(flat > plan.score_threshold)
    cand = cand[np.argsort(-flat[cand], kind="stable")][: plan.topk_candidates]
    idx, labels = cand // k, cand % k
    boxes = decode(output[idx, k:], anchor_boxes[idx]).astype(np.float64)
    upper = np.asarray(plan.input_size, dtype=np.float64)
    boxes = np.concatenate([np.clip(boxes[:, :d], 0, upper), np.clip(boxes[:, d:], 0, upper)], axis=1)
    ok = ((boxes[:, d:] - boxes[:, :d]) > MIN_SIDE).all(axis=1)
    boxes, s, labels = boxes[ok], flat[cand][ok], labels[ok]
    keep = class_nms(boxes, s, labels, plan.nms_threshold)[: plan.max_detections]
    return {"boxes": boxes[keep], "scores": s[keep], "labels": labels[keep].astype(np.int64)}


def class_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression within each class, by descending score."""
    from medsight.metrics.detection import box_iou

    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    suppressed = np.zeros(len(order), dtype=bool)
    ious = box_iou(boxes[order], boxes[order]) if len(order) else np.zeros((0, 0))
    same = labels[order][:, None] == labels[order][None, :]
    for i in range(len(order)):
        if suppressed[i]:
            continue
        kept.append(int(order[i]))
        suppressed |= (ious[i] > threshold) & same[i]
    return np.asarray(kept, dtype=np.int64)


def to_image_boxes(boxes: np.ndarray, input_size: list[int], shape: tuple[int, ...]) -> np.ndarray:
    """Array-order boxes on the input grid -> medsight-order boxes on the image of spatial ``shape``."""
    from medsight.data.boxes import array_order

    d = len(shape)
    scale = np.asarray(shape, dtype=np.float64) / np.asarray(input_size, dtype=np.float64)
    return array_order(np.asarray(boxes, dtype=np.float64).reshape(-1, 2 * d) * np.tile(scale, 2), d)


def to_input_boxes(coords: np.ndarray, input_size: list[int], shape: tuple[int, ...]) -> np.ndarray:
    """:func:`to_image_boxes` inverted: medsight-order image boxes -> array-order input-grid boxes."""
    from medsight.data.boxes import array_order

    d = len(shape)
    scale = np.asarray(input_size, dtype=np.float64) / np.asarray(shape, dtype=np.float64)
    return array_order(coords, d) * np.tile(scale, 2)


def detections(outputs: np.ndarray, plan: Any, shapes: list[tuple[int, ...]]) -> list[dict[str, np.ndarray]]:
    """A batch of network outputs ``(B, A, K + 2d)`` -> each image's boxes (medsight order, image
    pixels), scores and labels."""
    anchor_boxes = anchors(plan)
    if outputs.shape[1] != len(anchor_boxes):
        from medsight.errors import ShapeError

        raise ShapeError("network output", f"(B, {len(anchor_boxes)}, ...) anchors", outputs.shape)
    out = []
    for output, shape in zip(outputs, shapes, strict=True):
        found = select(output, anchor_boxes, plan)
        found["boxes"] = to_image_boxes(found["boxes"], plan.input_size, shape)
        out.append(found)
    return out


def input_array(image: np.ndarray, plan: Any) -> np.ndarray:
    """``(C, *spatial)`` raw image -> the plan's normalised ``(C, *input_size)`` float32 (numpy; the
    ONNX runtime uses it too). Grey images feed RGB models as 3 equal channels, and RGB images grey
    models as their mean."""
    from medsight.transforms.classification import input_array as resized

    image = channels_as(np.asarray(image, dtype=np.float32), plan.in_channels)
    return resized(image, plan)


def channels_as(image: np.ndarray, channels: int) -> np.ndarray:
    if image.shape[0] == channels:
        return image
    if image.shape[0] == 1:
        return np.repeat(image, channels, axis=0)
    if channels == 1 and image.shape[0] in (3, 4):
        return image[:3].mean(axis=0, keepdims=True)
    from medsight.errors import DataError

    raise DataError(f"image with {image.shape[0]} channels: the model takes {channels}")
