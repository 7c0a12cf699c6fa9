"""The detection planner: input size, levels and anchors from the boxes, flips, overrides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medsight.data.boxes import BoxData, load_boxes
from medsight.data.spec import Boxes, Case
from medsight.errors import ConfigError
from medsight.tasks.detect.planning import plan_detection


def _data(sides: list[tuple[float, float]], names: list[str], size: tuple[int, int] = (512, 384)) -> BoxData:
    cases = []
    for i, (h, w) in enumerate(sides):
        coords = np.array([[10.0, 20.0, 10.0 + w, 20.0 + h]])  # x = column: w along x, h along y
        array = np.full((1, *size), 100, np.uint8)
        cases.append(
            Case(f"c{i}", boxes=Boxes(coords, np.array([i % len(names)])), array=array, extra={"size": size})
        )
    return BoxData("toy", 2, 1, names, {"train": cases})


def test_big_boxes_get_coarse_levels_and_anchors_from_their_sides() -> None:
    sides = [(300.0, 160.0)] * 10 + [(400.0, 200.0)] * 10 + [(480.0, 240.0)] * 10
    plan = plan_detection(_data(sides, ["Left lung", "Right lung"]), measure=False)
    assert plan.input_size == [256, 192]  # 512 x 384 scaled to 256 on the long side, multiples of 64
    assert plan.strides == [16, 32, 64] and plan.network_kwargs["returned_layers"] == [3, 4]
    # k-means centres of the box sides on the input grid (x 0.5), at the middle level (x 2)
    np.testing.assert_allclose(plan.anchor_shapes, [[75, 40], [100, 50], [120, 60]], rtol=1e-3)
    assert plan.flip_axes == [] and "name a side" in plan.reasons["flip_axes"]
    assert plan.class_names == ["Left lung", "Right lung"] and plan.category_ids == [1, 2]
    assert plan.normalization[0].scheme == "rgb"


def test_small_boxes_get_fine_levels_and_flips(tmp_path: Path) -> None:
    from medsight.tasks.detect.example import make_box_dataset

    root, _ = make_box_dataset(tmp_path / "data")
    plan = plan_detection(load_boxes(root), measure=False)
    assert plan.strides == [8, 16, 32] and plan.input_size == [64, 64]
    assert plan.flip_axes == [0, 1] and plan.batch_size == 4
    assert len(plan.anchor_shapes) == plan.network_kwargs["num_anchors"] == 3


def test_overrides_apply_and_unknown_ones_fail() -> None:
    data = _data([(100.0, 60.0)] * 8, ["nodule"])
    plan = plan_detection(data, measure=False, overrides={"input_size": [128, 96], "score_threshold": 0.2})
    assert plan.input_size == [128, 96] and plan.score_threshold == 0.2
    assert plan.reasons["score_threshold"] == "set by the user"
    with pytest.raises(ConfigError, match="anchor_shape"):
        plan_detection(data, measure=False, overrides={"anchor_shape": [[1, 1]]})
