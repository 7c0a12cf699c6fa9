"""Anomaly scoring without torch: the task half of ``medsight predict --model DIR`` (see
:mod:`medsight.deploy.runtime`). The exported network is :class:`medsight.tasks.anomaly.scoring.Scorer`
(column 0 the image score, the rest the map on the plan's grid); inputs are prepared by
:func:`medsight.tasks.anomaly.outputs.input_array`, the PyTorch path's own numpy code, and the outputs
are written by :func:`medsight.tasks.anomaly.outputs.anomaly_path`, so they are those of
``medsight predict --run RUN`` up to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from medsight.deploy.runtime import Network
from medsight.io.batch import ShardLike
from medsight.tasks.anomaly.outputs import anomaly_path, input_array, split_output
from medsight.tasks.anomaly.planning import AnomalyPlan


class Runtime:
    """An exported anomaly model: scores and maps of raw arrays, and the prediction folder."""

    plan_type: ClassVar[type[AnomalyPlan]] = AnomalyPlan

    def __init__(self, network: Network, plan: AnomalyPlan) -> None:
        self.network, self.plan = network, plan

    def predict_path(
        self, input: Path, output: Path, *, overwrite: bool = False, shard: ShardLike = None
    ) -> list[Path]:
        """scores.csv and maps/ of every input under ``input`` (see ``anomaly_path``)."""
        return anomaly_path(input, output, self.plan, lambda: self.score, overwrite=overwrite, shard=shard)

    def score(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Scores ``(N,)`` and maps ``(N, 1, *input_size)`` of raw ``(C, *spatial)`` images."""
        x = np.stack([input_array(np.asarray(im, dtype=np.float32), self.plan) for im in images])
        return split_output(self.network(np.ascontiguousarray(x)), self.plan.input_size)
