"""Score images with a trained anomaly run: ``scores.csv`` and one anomaly map per input in its own
geometry (see :mod:`medsight.tasks.anomaly.outputs`).

Inputs: one image file, a folder of images (searched recursively, sorted), or a CSV manifest with an
``image`` column (or ``image_0000``, ``image_0001`` ... one file per channel), paths relative to it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsight.io.batch import Shard
from medsight.runs import Run, open_run
from medsight.tasks.anomaly.outputs import Scores, anomaly_path
from medsight.tasks.contract import PredictRequest


def predict_path(
    run_dir: str | Path,
    source: str | Path,
    output: str | Path,
    *,
    overwrite: bool = False,
    shard: str | Shard | tuple[int, int] | None = None,
) -> list[Path]:
    """Score every input under ``source`` into the folder ``output`` (scores.csv, maps/); returns the CSV."""
    run = open_run(run_dir)

    def make_scorer() -> Scores:
        import torch

        from medsight.tasks.anomaly.outputs import input_array
        from medsight.tasks.anomaly.pipeline import load_model, score_inputs

        task, model = load_model(run)

        def score(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            x = torch.from_numpy(np.stack([input_array(im, run.plan) for im in images]))
            return score_inputs(task, model, x)

        return score

    return anomaly_path(Path(source), Path(output), run.plan, make_scorer, overwrite=overwrite, shard=shard)


def predict_request(run: Run, request: PredictRequest) -> list[Path]:
    """``medsight predict --run``: scores.csv and maps/ for every input under ``request.input``."""
    return predict_path(
        run.path, request.input, request.output, overwrite=request.overwrite, shard=request.shard
    )
