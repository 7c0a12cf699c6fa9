"""Classify images with a trained run: one CSV row per input (its path, a probability column per
class named after the class, the predicted label).

Inputs: one image file, a folder of images (searched recursively, sorted), or a CSV manifest with an
``image`` column (or ``image_0000``, ``image_0001`` ... one file per modality), paths relative to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medsight.data.spec import Case
from medsight.io.batch import Shard
from medsight.runs import Run, open_run
from medsight.tasks.classify.outputs import classify_path
from medsight.tasks.contract import PredictRequest


def predict_path(
    run_dir: str | Path,
    source: str | Path,
    output: str | Path,
    *,
    tta: bool | None = None,
    overwrite: bool = False,
    shard: str | Shard | tuple[int, int] | None = None,
) -> Path:
    """Classify every input under ``source``; write ``output`` (a .csv file, or a folder that gets
    predictions.csv) and return its path.

    Resumable: the CSV is rewritten atomically after each batch and a rerun skips the inputs that
    already have a row (``overwrite=True`` starts afresh). With ``shard`` (``"I/N"``, or torchrun's
    RANK / WORLD_SIZE) this process classifies every N-th input by sorted path and writes
    ``<stem>.part-I-of-N.csv``; the shard that completes the last part merges the parts into
    ``output`` (in input order) and returns it, the others return their part.
    See :func:`medsight.tasks.classify.outputs.classify_path`.
    """
    run = open_run(run_dir)

    def make_predictor() -> Any:
        from medsight.tasks.classify.pipeline import load_model, predict_probabilities, stack_inputs

        task, model = load_model(run)
        if tta is not None:
            task.plan = task.plan.model_copy(update={"tta": tta})

        def probabilities(samples: list[Case]) -> np.ndarray:
            return predict_probabilities(task, model, stack_inputs(samples, task.plan))

        return probabilities

    return classify_path(
        Path(source), Path(output), run.plan, make_predictor, overwrite=overwrite, shard=shard
    )


def predict_request(run: Run, request: PredictRequest) -> list[Path]:
    """``medsight predict --run``: the prediction CSV of every input under ``request.input``, and for
    DICOM inputs a Comprehensive SR beside it (``request.dicom``: None when possible, True required,
    False none)."""
    table = predict_path(
        run.path,
        request.input,
        request.output,
        tta=request.tta,
        overwrite=request.overwrite,
        shard=request.shard,
    )
    if request.dicom is False:
        return [table]
    from medsight.deploy.dicom_sr import classification_srs

    srs = classification_srs(table, run.path.name, required=bool(request.dicom), overwrite=request.overwrite)
    return [table, *srs]
