"""Classify images with a trained run: one CSV row per input (its path, a probability column per
class named after the class, the predicted label).

Inputs: one image file, a folder of images (searched recursively, sorted), or a CSV manifest with an
``image`` column (or ``image_0000``, ``image_0001`` ... one file per modality), paths relative to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medsight.data.classification import Sample
from medsight.deploy.batch import Shard
from medsight.deploy.cases import classify_path
from medsight.runs import open_run


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
    See :func:`medsight.deploy.cases.classify_path`.
    """
    run = open_run(run_dir)

    def make_predictor() -> Any:
        from medsight.tasks.classify.pipeline import load_model, predict_probabilities, stack_inputs

        task, model = load_model(run)
        if tta is not None:
            task.plan = task.plan.model_copy(update={"tta": tta})

        def probabilities(samples: list[Sample]) -> np.ndarray:
            return predict_probabilities(task, model, stack_inputs(samples, task.plan))

        return probabilities

    return classify_path(
        Path(source), Path(output), run.plan, make_predictor, overwrite=overwrite, shard=shard
    )
