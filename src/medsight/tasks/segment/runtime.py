"""Segmentation without torch: the task half of ``medsight predict --model DIR`` (see
:mod:`medsight.deploy.runtime`).

The pre/post-processing is the PyTorch predictor's own torch-free code: normalisation, 3D crop to the
non-zero region, resampling and ``restore`` from :mod:`medsight.transforms.segmentation`, window
placement and Gaussian blending from :mod:`medsight.engine.windows`, files from
:mod:`medsight.tasks.segment.outputs`. So the label maps (input geometry and format) are those of
``medsight predict --run RUN``, up to float rounding in the network.

Example::

    predictor = OnnxPredictor("deploy/drive")            # deploy.json names this module
    probs = predictor.runtime.probabilities(image)       # (C, *image.shape)
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from medsight.deploy.runtime import Network, sliding_window
from medsight.io import Image, read_image
from medsight.io.batch import ShardLike
from medsight.tasks.segment.outputs import segment_path
from medsight.tasks.segment.planning import Plan


class Runtime:
    """An exported segmenter: label maps of files, images, or their probabilities."""

    plan_type: ClassVar[type[Plan]] = Plan

    def __init__(self, network: Network, plan: Plan) -> None:
        self.network, self.plan = network, plan

    def predict_path(
        self, input: Path, output: Path, *, overwrite: bool = False, shard: ShardLike = None
    ) -> list[Path]:
        """A label map per case under ``input`` (see :func:`~medsight.tasks.segment.outputs.segment_path`)."""
        return segment_path(
            input, output, self.plan.in_channels, self.predict_files, overwrite=overwrite, shard=shard
        )

    def predict_files(self, files: list[Path], case_id: str = "case") -> Image:
        """The label map of one case given as one file per channel."""
        from medsight.data.inputs import stack_channels

        return self.predict_image(stack_channels([read_image(p) for p in files]), case_id)

    def predict_image(self, image: Image, case_id: str = "case") -> Image:
        """The label map of ``image`` in its own geometry (as ``SegmentTask.predict``)."""
        from medsight.transforms.segmentation import largest_components, to_label_map

        labels = to_label_map(self.probabilities(image, case_id), self.plan.label_values, self.plan.regions)
        if self.plan.postprocess_lcc:
            labels = largest_components(labels, self.plan.label_values[1:])
        return image.with_array(labels[None], kind="label")

    def probabilities(self, image: Image, case_id: str = "case") -> np.ndarray:
        """Probabilities ``(C, *image.shape)`` on the input's grid (softmax classes or sigmoid regions)."""
        from medsight.transforms.segmentation import preprocess, restore

        pre = preprocess(image, None, self.plan, case_id)
        region = self.plan.regions is not None
        probs = sliding_window(
            self.network,
            pre.image,
            patch_size=self.plan.patch_size,
            overlap=self.plan.sliding_window_overlap,
            tta_flips=self.plan.tta,
            activation="sigmoid" if region else "softmax",
            batch_size=self.plan.batch_size,
        )
        return restore(probs, pre, background=0.0 if region else 1.0)
