"""The segment family's served model: a label map per upload, with areas / volumes per class.

JSON answer (:class:`SegmentBody`): shape, spacing, the label values, the size of every foreground
class, and the mask file (PNG for 2D, NIfTI for 3D) base64; ``format=png|nifti`` answers the file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, Field

from medsight.deploy.serving import Mask, PredictBody, ServedModel, encode_image, file_body
from medsight.errors import DataError

if TYPE_CHECKING:
    from medsight.io import Image
    from medsight.runs import Run


class Volume(BaseModel):
    label: int
    voxels: int
    size: float = Field(description="area (2D) or volume (3D) in the unit given")
    unit: Literal["mm2", "mm3"]


class SegmentBody(PredictBody):
    shape: list[int]
    spacing: list[float]
    labels: dict[str, int]
    volumes: dict[str, Volume]
    mask: Mask


class Segmenter(ServedModel):
    """A run's segmenter (PyTorch, on CUDA when there is one) answering label maps."""

    response_model: ClassVar[type[PredictBody]] = SegmentBody

    def __init__(self, run: Run) -> None:
        from medsight.tasks.segment.pipeline import load_model
        from medsight.tasks.segment.predictor import Predictor

        super().__init__(run)
        self.predictor = Predictor(*load_model(run, "auto"))

    def label_map(self, image: Image, case_id: str = "case") -> Image:
        """The label map of ``image`` in its geometry (:class:`~medsight.deploy.serving.LabelMapModel`)."""
        return self.predictor.predict_image(image, case_id)

    def segments(self) -> dict[str, int]:
        """Foreground name -> label value of the label maps."""
        return {n: v for n, v in self.run.plan.label_names().items() if v != 0}

    def predict(self, image: Image, output: str, preview: bool) -> dict[str, Any] | bytes:
        labels = self.label_map(image, "upload")
        fmt = output if output != "json" else ("png" if labels.ndim == 2 else "nifti")
        if fmt == "png" and labels.ndim != 2:
            raise DataError("format=png is only for 2D images; ask for format=nifti or json")
        data = encode_image(labels, fmt)
        if output != "json":
            return data
        fields = {
            "shape": list(labels.shape),
            "spacing": list(labels.spacing),
            "labels": {k: int(v) for k, v in self.run.plan.label_names().items()},
            "volumes": self._volumes(labels),
            "mask": file_body(data, fmt),
        }
        return self.answer(image, fields, with_preview=preview, labels=labels.array[0])

    def _volumes(self, labels: Image) -> dict[str, dict[str, Any]]:
        """Voxel count and area (2D, mm2) or volume (3D, mm3) of every foreground class."""
        voxel = float(np.prod(labels.spacing))
        unit = "mm2" if labels.ndim == 2 else "mm3"
        counts = {name: int(np.count_nonzero(labels.array[0] == v)) for name, v in self.segments().items()}
        return {
            name: {"label": v, "voxels": counts[name], "size": counts[name] * voxel, "unit": unit}
            for name, v in self.segments().items()
        }
