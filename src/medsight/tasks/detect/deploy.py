"""What deploy/ needs from the detect family: the network to export and the model to serve.

The exported graph is the network alone (per-anchor outputs); anchors, decoding, score threshold and
NMS are the runtime's numpy code (:mod:`medsight.tasks.detect.postprocess`), shared with PyTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medsight.deploy.export import ExportSpec
    from medsight.runs import Run
    from medsight.tasks.detect.serving import Detector

RUNTIME = f"{__package__}.runtime"


def export_spec(run: Run) -> ExportSpec:
    """The run's network on an example input of the plan's size, and the post-processing settings."""
    from medsight.deploy.export import ExportSpec, example_input
    from medsight.tasks.detect.pipeline import load_model

    _, model = load_model(run, "cpu")
    plan = run.plan
    fields = {
        "input_size": list(plan.input_size),
        "layout": "(batch, channels, *input_size), float32, normalised",
        "output_shape": "(batch, anchors, classes + 2 * dim)",
        "output_layout": "per anchor: class logits (sigmoid), then MONAI BoxCoder codes (array-axis order)",
        "strides": list(plan.strides),
        "anchor_shapes": plan.anchor_shapes,
        "score_threshold": plan.score_threshold,
        "nms_threshold": plan.nms_threshold,
        "max_detections": plan.max_detections,
        "category_ids": list(plan.category_ids),
    }
    return ExportSpec(
        network=model,
        example=example_input(plan.in_channels, plan.input_size),
        runtime=RUNTIME,
        fields=fields,
    )


def served_model(run: Run) -> Detector:
    """The run's detector, loaded once, for the REST service."""
    from medsight.tasks.detect.serving import Detector

    return Detector(run)
