"""The enhance family's served model: the enhanced image of an upload (NIfTI or PNG, base64, or the file)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from medsight.deploy.serving import Mask, PredictBody, ServedModel, encode_image, file_body

if TYPE_CHECKING:
    from medsight.io import Image
    from medsight.runs import Run


class EnhanceBody(PredictBody):
    shape: list[int]
    degradation: str | None
    enhanced: Mask


class Enhancer(ServedModel):
    """A run's enhancer (PyTorch, on CUDA when there is one)."""

    response_model: ClassVar[type[PredictBody]] = EnhanceBody

    def __init__(self, run: Run) -> None:
        from medsight.tasks.enhance.predictor import Predictor

        super().__init__(run)
        self.predictor = Predictor(run)

    def check(self, image: Image) -> None:
        from medsight.errors import DataError
        from medsight.io.readers import has_nonfinite

        if image.channels != 1:
            raise DataError(f"the image has {image.channels} channels; this model enhances one")
        if has_nonfinite(image):
            raise DataError("the image holds NaN or infinite values")

    def predict(self, image: Image, output: str, preview: bool) -> dict[str, Any] | bytes:
        from medsight.tasks.enhance.data import image_stack

        out = self.predictor.enhance(image_stack(image.array, "upload"))
        array = out[0] if image.ndim == 2 else np.moveaxis(out, 0, -1)
        enhanced = image.with_array(array[None].astype(np.float32))
        fmt = output if output != "json" else ("png" if image.ndim == 2 else "nifti")
        data = encode_image(enhanced, fmt)
        if output != "json":
            return data
        fields = {
            "shape": list(image.shape),
            "degradation": self.run.plan.degradation,
            "enhanced": file_body(data, fmt),
        }
        return self.answer(enhanced, fields, with_preview=preview)
