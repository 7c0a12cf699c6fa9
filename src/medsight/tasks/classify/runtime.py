"""Classification without torch: the task half of ``medsight predict --model DIR`` (see
:mod:`medsight.deploy.runtime`).

Inputs are resized and normalised by :func:`medsight.transforms.classification.input_array` (the
PyTorch path's own numpy code), the CSV is written by :mod:`medsight.tasks.classify.outputs`, so it is
the CSV of ``medsight predict --run RUN``, up to float rounding in the network.

Example::

    predictor = OnnxPredictor("deploy/breast")           # deploy.json names this module
    probs = predictor.runtime.probabilities(samples)     # (N, K)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from medsight.data.spec import Case
from medsight.deploy.runtime import Network, sigmoid, softmax
from medsight.io.batch import ShardLike
from medsight.tasks.classify.outputs import classify_path
from medsight.tasks.classify.planning import ClassifyPlan


class Runtime:
    """An exported classifier: class probabilities of samples or raw arrays, and the prediction CSV."""

    plan_type: ClassVar[type[ClassifyPlan]] = ClassifyPlan

    def __init__(self, network: Network, plan: ClassifyPlan) -> None:
        self.network, self.plan = network, plan

    def predict_path(
        self, input: Path, output: Path, *, overwrite: bool = False, shard: ShardLike = None
    ) -> list[Path]:
        """The prediction CSV of every input under ``input`` (see
        :func:`~medsight.tasks.classify.outputs.classify_path`)."""
        table = classify_path(
            input, output, self.plan, lambda: self.probabilities, overwrite=overwrite, shard=shard
        )
        return [table]

    def probabilities(self, samples: Sequence[Case]) -> np.ndarray:
        """Class probabilities ``(N, K)`` of cases (``medsight.data.Case``)."""
        return self.probabilities_of_arrays([s.read() for s in samples])

    def probabilities_of_arrays(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities ``(N, K)`` of raw ``(C, *spatial)`` images, averaged over flips (``tta``)."""
        from medsight.transforms.classification import input_array

        x = np.stack([input_array(np.asarray(im, dtype=np.float32), self.plan) for im in images])
        x = x.astype(np.float16).astype(np.float32)  # the PyTorch path keeps inputs as float16
        views = [x] + ([np.flip(x, a + 2) for a in self.plan.flip_axes] if self.plan.tta else [])
        activation = sigmoid if self.plan.problem == "multilabel" else softmax
        return np.mean([activation(self.network(np.ascontiguousarray(v))) for v in views], axis=0)
