"""Detection without torch: the task half of ``medsight predict --model DIR`` (see
:mod:`medsight.deploy.runtime`).

The ONNX graph is the network (per-anchor class logits and box codes); inputs are prepared by
:func:`medsight.tasks.detect.postprocess.input_array` and outputs decoded by
:func:`medsight.tasks.detect.postprocess.detections`, the PyTorch predictor's own numpy code, and the
files are written by :mod:`medsight.tasks.detect.outputs`: the boxes of ``medsight predict --run RUN``.

Example::

    predictor = OnnxPredictor("deploy/lungs")          # deploy.json names this module
    found = predictor.runtime.detect_arrays([image])   # [{"boxes", "scores", "labels"}]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from medsight.data.spec import Case
from medsight.deploy.runtime import Network
from medsight.io.batch import ShardLike
from medsight.tasks.detect.outputs import detect_path
from medsight.tasks.detect.planning import DetectPlan
from medsight.tasks.detect.postprocess import detections, input_array


class Runtime:
    """An exported detector: boxes of raw arrays, and predict's files."""

    plan_type: ClassVar[type[DetectPlan]] = DetectPlan

    def __init__(self, network: Network, plan: DetectPlan) -> None:
        self.network, self.plan = network, plan

    def predict_path(
        self, input: Path, output: Path, *, overwrite: bool = False, shard: ShardLike = None
    ) -> list[Path]:
        """detections.csv / .json, images.csv and overlays of every input under ``input``."""

        def detect(cases: list[Case]) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
            images = [c.read() for c in cases]
            return list(zip(images, self.detect_arrays(images), strict=True))

        return detect_path(input, output, self.plan, lambda: detect, overwrite=overwrite, shard=shard)

    def detect_arrays(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Boxes (medsight order, image pixels), scores and labels of raw ``(C, *spatial)`` images."""
        x = np.stack([input_array(np.asarray(im, dtype=np.float32), self.plan) for im in images])
        x = x.astype(np.float16).astype(np.float32)  # the PyTorch path keeps inputs as float16
        return detections(
            self.network(np.ascontiguousarray(x)), self.plan, [tuple(im.shape[1:]) for im in images]
        )
