"""Detect boxes with a trained run: detections.csv, detections.json, images.csv and overlay PNGs (see
:mod:`medsight.tasks.detect.outputs`); for DICOM inputs also a Comprehensive SR per image.

Inputs: one image file, a folder of images (searched recursively, sorted) or a CSV manifest with an
``image`` column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medsight.data.spec import Case
from medsight.runs import Run
from medsight.tasks.contract import PredictRequest
from medsight.tasks.detect.outputs import detect_path


def make_detector(run: Run) -> Any:
    """A function from cases to (image, detections) per case, with the run's model loaded once."""
    from medsight.tasks.detect.pipeline import load_model, predict_cases

    task, model = load_model(run)

    def detect(cases: list[Case]) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        images = [c.read() for c in cases]
        arrays = [Case(c.case_id, c.images, array=im) for c, im in zip(cases, images, strict=True)]
        return list(zip(images, predict_cases(model, task.plan, arrays), strict=True))

    return detect


def predict_path(
    run: Run, source: Path, output: Path, *, overwrite: bool = False, shard: Any = None
) -> list[Path]:
    """Detect boxes in every input under ``source``; write into the folder ``output``."""
    return detect_path(source, output, run.plan, lambda: make_detector(run), overwrite=overwrite, shard=shard)


def predict_request(run: Run, request: PredictRequest) -> list[Path]:
    """``medsight predict --run``: the detection files, and for DICOM inputs a Comprehensive SR with
    each box as an image region (``request.dicom``: None when possible, True required, False none)."""
    written = predict_path(
        run, request.input, request.output, overwrite=request.overwrite, shard=request.shard
    )
    if request.dicom is False:
        return written
    from medsight.tasks.detect.dicom import detection_srs

    srs = detection_srs(
        request.input, request.output, run, required=bool(request.dicom), overwrite=request.overwrite
    )
    return [*written, *srs]
