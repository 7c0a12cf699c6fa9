"""Learning on real data: lung boxes of the COVID chest X-rays, a short run, mAP@0.5 far above chance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medsight import api


@pytest.mark.realdata
def test_lung_boxes_are_learned(data_root: Path, tmp_path: Path) -> None:
    quick = [
        "train.max_iterations=40",
        "train.iterations_per_epoch=20",
        "train.progress=false",
        "plan.input_size=[128, 128]",
        "plan.network_kwargs={base_filters: 8}",
    ]
    run = api.train("covid-cxr-lungs", task="detect", overrides=quick, out=tmp_path, measure=False)
    plan = json.loads((run / "plan.json").read_text())
    assert plan["class_names"] == ["Right Lung", "Left Lung"] and plan["flip_axes"] == []
    splits = json.loads((run / "splits.json").read_text())
    summary = json.loads((run / "eval" / "val" / "summary.json").read_text())
    assert summary["info"]["images"] == len(splits[0]["val"]) > 40  # the patient-level 20 % fold
    assert summary["all"]["map_50"]["mean"] > 0.5  # an untrained detector scores ~0
    assert summary["all"]["cpm"]["mean"] > 0.5
