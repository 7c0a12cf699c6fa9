"""Inference from a run folder: files or folders in, label maps out in the input's geometry.

Finding the cases is :mod:`medsight.data.inputs` and writing the outputs
:mod:`medsight.tasks.segment.outputs` (shared with the ONNX runtime); this module runs the PyTorch model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from medsight.data.inputs import stack_channels
from medsight.data.reading import CaseData
from medsight.data.spec import Case
from medsight.io import Image, read_image
from medsight.io.batch import Shard
from medsight.runs import Run, open_run
from medsight.tasks.contract import PredictRequest
from medsight.tasks.segment.outputs import segment_path
from medsight.tasks.segment.pipeline import load_model
from medsight.tasks.segment.task import SegmentTask


class Predictor:
    """A trained segmenter ready to predict: ``Predictor.from_run(run).predict_image(image)``."""

    def __init__(self, task: SegmentTask, model: torch.nn.Module) -> None:
        self.task, self.model = task, model

    @classmethod
    def from_run(cls, run_dir: str | Path, *, tta: bool | None = None, device: str = "auto") -> Predictor:
        run = open_run(run_dir)
        task, model = load_model(run, device)
        if tta is not None:
            task.plan = task.plan.model_copy(update={"tta": tta})
        return cls(task, model)

    def predict_image(self, image: Image, case_id: str = "case") -> Image:
        """The label map of ``image`` (channels stacked as the model expects), same geometry."""
        case = Case(case_id=case_id, images=())
        with torch.inference_mode():
            return self.task.predict(self.model, CaseData(case=case, image=image)).output

    def predict_files(self, files: list[Path], case_id: str) -> Image:
        """The label map of one case given as one file per channel."""
        return self.predict_image(stack_channels([read_image(p) for p in files]), case_id)

    def predict_path(
        self,
        input: Path,
        output: Path,
        *,
        overwrite: bool = False,
        shard: str | Shard | tuple[int, int] | None = None,
    ) -> list[Path]:
        """Predict every case under ``input``; write ``output/<case><ext>`` (a file when ``output``
        has an image suffix and ``input`` is one case) and return this shard's output paths.

        Resumable: a case whose output exists is skipped (``overwrite=True`` predicts it again and
        replaces the file); each output is written atomically, so a killed run leaves only complete
        files. With ``shard`` (``"I/N"``, or torchrun's RANK / WORLD_SIZE) this process predicts every
        N-th case by sorted case id."""
        return segment_path(
            input, output, self.task.plan.in_channels, self.predict_files, overwrite=overwrite, shard=shard
        )


def predict_request(run: Run, request: PredictRequest) -> list[Path]:
    """``medsight predict --run``: label maps of every case under ``request.input`` in ``request.output``,
    and for DICOM series a DICOM SEG beside each (``request.dicom``: None when possible, True required,
    False none). Returns the paths written (and those already there from an earlier run)."""
    predictor = Predictor.from_run(run.path, tta=request.tta)
    outputs = predictor.predict_path(
        request.input, request.output, overwrite=request.overwrite, shard=request.shard
    )
    if request.dicom is False:
        return outputs
    from medsight.deploy.dicom_seg import dicom_segs

    return outputs + dicom_segs(
        run.path, request.input, outputs, required=bool(request.dicom), overwrite=request.overwrite
    )
