"""Enhancement with a trained run: degraded images or raw k-space in, enhanced images out (see
:mod:`medsight.tasks.enhance.outputs`, shared with the ONNX runtime); this module runs the PyTorch model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsight.io.batch import ShardLike
from medsight.runs import Run, open_run
from medsight.tasks.contract import PredictRequest
from medsight.tasks.enhance.outputs import enhance_path
from medsight.tasks.enhance.slices import Network


class Predictor:
    """A trained enhancer: ``Predictor.from_run(run).enhance(stack)`` or ``.predict_path(input, output)``."""

    def __init__(self, run: Run, device: str = "auto") -> None:
        from medsight.tasks.enhance.pipeline import load_model, torch_network

        self.run = run
        self.task, self.model = load_model(run, device)
        self.network: Network = torch_network(self.model)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "auto") -> Predictor:
        return cls(open_run(run_dir), device)

    def enhance(
        self, stack: np.ndarray, kspace: np.ndarray | None = None, mask: np.ndarray | None = None
    ) -> np.ndarray:
        """Enhanced slices (S, H, W) of degraded slices, or of acquired k-space (S, H, W) and its mask."""
        from medsight.tasks.enhance.slices import enhance_stack

        return enhance_stack(self.network, self.task.plan, stack, kspace, mask)

    def predict_path(
        self, input: Path, output: Path, *, overwrite: bool = False, shard: ShardLike = None
    ) -> list[Path]:
        return enhance_path(
            input, output, self.task.plan, lambda: self.network, overwrite=overwrite, shard=shard
        )


def predict_request(run: Run, request: PredictRequest) -> list[Path]:
    """``medsight predict --run``: an enhanced file per input under ``request.input``."""
    plan = run.plan
    return enhance_path(
        request.input,
        request.output,
        plan,
        lambda: Predictor(run).network,
        overwrite=request.overwrite,
        shard=request.shard,
    )
