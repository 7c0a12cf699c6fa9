"""The anomaly family's served model: the image's anomaly score, whether it is above the run's
threshold, and (``format=nifti``) its anomaly map in the upload's geometry.

JSON answer (:class:`AnomalyBody`): the score, its kind, the threshold and the decision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from medsight.deploy.serving import PredictBody, ServedModel
from medsight.errors import DataError

if TYPE_CHECKING:
    from medsight.io import Image
    from medsight.runs import Run


class AnomalyBody(PredictBody):
    score: float
    score_kind: str
    threshold: float | None
    anomalous: bool | None


class AnomalyScorer(ServedModel):
    """A run's anomaly model (PyTorch, on CUDA when there is one) answering scores and maps."""

    response_model: ClassVar[type[PredictBody]] = AnomalyBody

    def __init__(self, run: Run) -> None:
        from medsight.tasks.anomaly.pipeline import load_model

        super().__init__(run)
        self.task, self.model = load_model(run, "auto")

    def _score(self, image: Image) -> tuple[float, np.ndarray]:
        import torch

        from medsight.tasks.anomaly.outputs import input_array
        from medsight.tasks.anomaly.pipeline import score_inputs

        x = torch.from_numpy(input_array(image.array.astype(np.float32), self.run.plan))[None]
        scores, maps = score_inputs(self.task, self.model, x)
        return float(scores[0]), maps[0]

    def predict(self, image: Image, output: str, preview: bool) -> dict[str, Any] | bytes:
        from medsight.deploy.serving import encode_image
        from medsight.tasks.anomaly.outputs import map_in_geometry

        score, grid_map = self._score(image)
        if output == "nifti":
            return encode_image(map_in_geometry(grid_map, image), "nifti")
        if output != "json":
            raise DataError(f"format={output}: an anomaly model answers json or nifti (the anomaly map)")
        threshold = self.run.plan.threshold
        fields = {
            "score": score,
            "score_kind": self.run.plan.score,
            "threshold": threshold,
            "anomalous": None if threshold is None else bool(score > threshold),
        }
        return self.answer(image, fields, with_preview=preview)
