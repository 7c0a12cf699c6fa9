"""Boxes drawn on small and large pictures: small ones are enlarged by a whole factor with their boxes."""

from __future__ import annotations

import numpy as np

from medsight.tasks.detect.drawing import GREEN, RED, draw_boxes


def test_small_picture_is_enlarged_with_its_boxes() -> None:
    rgb = np.zeros((28, 40, 3), np.uint8)
    out = draw_boxes(rgb, reference=np.array([[2, 3, 10, 12]]), predicted=np.array([[20, 5, 30, 20]]))
    assert out.shape == (28 * 7, 40 * 7, 3)  # 7 = the smallest whole factor reaching 256 px
    assert tuple(out[3 * 7, 6 * 7]) == GREEN  # the reference box's top edge, at x 6 (between x0 2 and x1 10)
    assert tuple(out[5 * 7, 25 * 7]) == RED


def test_large_picture_keeps_its_size() -> None:
    rgb = np.zeros((300, 260, 3), np.uint8)
    out = draw_boxes(rgb, reference=np.array([[10, 20, 100, 200]]))
    assert out.shape == rgb.shape and tuple(out[20, 50]) == GREEN
