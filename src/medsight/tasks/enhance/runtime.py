"""Enhancement without torch: the task half of ``medsight predict --model DIR`` (see
:mod:`medsight.deploy.runtime`). Pre/post-processing and files are the PyTorch path's own torch-free code
(:mod:`medsight.tasks.enhance.slices`, :mod:`medsight.tasks.enhance.outputs`), so the outputs are those of
``medsight predict --run RUN`` up to float rounding in the network.

The exported network takes the plan's slice size (ONNX inputs have fixed spatial sides): image-domain
inputs are tiled to it; k-space inputs must have that size.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from medsight.deploy.runtime import Network
from medsight.errors import DataError
from medsight.io.batch import ShardLike
from medsight.tasks.enhance.outputs import enhance_path
from medsight.tasks.enhance.planning import EnhancePlan


class Runtime:
    """An exported enhancer: enhanced files of every input under a path."""

    plan_type: ClassVar[type[EnhancePlan]] = EnhancePlan

    def __init__(self, network: Network, plan: EnhancePlan) -> None:
        self.network, self.plan = network, plan

    def run(self, x: np.ndarray) -> np.ndarray:
        """The network on a batch at the exported slice size."""
        if list(x.shape[-2:]) != list(self.plan.slice_size):
            raise DataError(
                f"the exported network takes {self.plan.slice_size} slices, got {list(x.shape[-2:])} "
                "(k-space is never resized: predict with --run for other sizes)"
            )
        return self.network(x)

    def predict_path(
        self, input: Path, output: Path, *, overwrite: bool = False, shard: ShardLike = None
    ) -> list[Path]:
        """An enhanced file per input (see :func:`~medsight.tasks.enhance.outputs.enhance_path`)."""
        return enhance_path(input, output, self.plan, lambda: self.run, overwrite=overwrite, shard=shard)
