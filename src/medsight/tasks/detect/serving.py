"""The detect family's served model: the boxes of each upload, drawn on the page's preview.

JSON answer (:class:`DetectBody`): one entry per box (class, score, corners in pixels / voxels, x =
column in 2D); the preview's mask holds each box outline (value = class index + 1), which the web
page draws over the image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel

from medsight.deploy.serving import PredictBody, ServedModel
from medsight.errors import DataError

if TYPE_CHECKING:
    from medsight.io import Image
    from medsight.runs import Run


class DetectedBox(BaseModel):
    label: str
    score: float
    box: list[float]


class DetectBody(PredictBody):
    classes: list[str]
    boxes: list[DetectedBox]


class Detector(ServedModel):
    """A run's detector (PyTorch) answering boxes."""

    response_model: ClassVar[type[PredictBody]] = DetectBody

    def __init__(self, run: Run) -> None:
        from medsight.tasks.detect.pipeline import load_model

        super().__init__(run)
        self.task, self.model = load_model(run, "auto")

    def detect(self, image: Image) -> dict[str, np.ndarray]:
        from medsight.data.spec import Case
        from medsight.tasks.detect.pipeline import predict_cases

        return predict_cases(self.model, self.task.plan, [Case("upload", array=image.array)])[0]

    def predict(self, image: Image, output: str, preview: bool) -> dict[str, Any]:
        if output != "json":
            raise DataError(f"format={output}: a detector answers JSON only")
        found = self.detect(image)
        names = list(self.task.plan.class_names)
        boxes = [
            {"label": names[int(k)], "score": float(s), "box": [round(float(v), 3) for v in b]}
            for b, s, k in zip(found["boxes"], found["scores"], found["labels"], strict=True)
        ]
        outline = outlines(image.shape, found) if preview else None
        return self.answer(image, {"classes": names, "boxes": boxes}, with_preview=preview, labels=outline)


def outlines(shape: tuple[int, ...], found: dict[str, np.ndarray], min_score: float = 0.3) -> np.ndarray:
    """A label map of the box outlines (class index + 1) for the preview, 2D or 3D."""
    from medsight.data.boxes import array_order

    out = np.zeros(shape, dtype=np.uint8)
    d = len(shape)
    for box, score, label in zip(
        array_order(found["boxes"], d), found["scores"], found["labels"], strict=True
    ):
        if score < min_score:
            continue
        lo = [int(np.clip(np.floor(v), 0, s - 1)) for v, s in zip(box[:d], shape, strict=True)]
        hi = [int(np.clip(np.ceil(v) - 1, 0, s - 1)) for v, s in zip(box[d:], shape, strict=True)]
        region = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))
        inner = tuple(slice(a + 1, b) for a, b in zip(lo, hi, strict=True))
        block = out[region].copy()
        out[region] = int(label) + 1
        out[inner] = (
            block[tuple(slice(1, -1) for _ in range(d))]
            if all(b - a > 1 for a, b in zip(lo, hi, strict=True))
            else out[inner]
        )
    return out
