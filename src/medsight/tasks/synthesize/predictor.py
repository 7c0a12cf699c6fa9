"""Map images with a trained synthesis run (a VAE's reconstructions, pix2pix's translations) into a
folder, in each input's geometry and format (see :mod:`medsight.tasks.synthesize.outputs`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsight.runs import Run, open_run
from medsight.tasks.contract import PredictRequest
from medsight.tasks.synthesize.outputs import Network, synthesis_path


def torch_network(run: Run) -> Network:
    """The run's network (pix2pix's generator, the VAE) as a numpy function on the CPU."""
    import torch

    from medsight.tasks.synthesize.pipeline import load_model

    model = load_model(run, "cpu")
    net = model if run.plan.model == "vae" else model.generator

    def apply(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(x)).float().numpy()

    return apply


def predict_path(
    run_dir: str | Path, source: str | Path, output: str | Path, *, overwrite: bool = False
) -> list[Path]:
    """Map every input under ``source`` into the folder ``output``; returns the files written."""
    run = open_run(run_dir)
    return synthesis_path(
        Path(source), Path(output), run.plan, lambda: torch_network(run), overwrite=overwrite
    )


def predict_request(run: Run, request: PredictRequest) -> list[Path]:
    """``medsight predict --run``."""
    return predict_path(run.path, request.input, request.output, overwrite=request.overwrite)
