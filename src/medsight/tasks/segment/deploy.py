"""What deploy/ needs from the segment family: the network to export and the model to serve.

``SegmentFamily.export_spec`` / ``served_model`` (the Task contract) delegate to these functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medsight.deploy.export import ExportSpec
    from medsight.runs import Run
    from medsight.tasks.segment.serving import Segmenter

RUNTIME = f"{__package__}.runtime"  # this folder's torch-free runtime, whatever the folder is called


def export_spec(run: Run) -> ExportSpec:
    """The full-resolution head of the run's network (deep supervision dropped), an example patch, and
    what the runtime needs beyond the plan: spacing, windows, blending, TTA flips, labels, regions."""
    from medsight.deploy.export import ExportSpec, example_input
    from medsight.engine.windows import flip_sets
    from medsight.tasks.segment.pipeline import load_model
    from medsight.tasks.segment.task import HeadOnly

    _, net = load_model(run, "cpu")
    plan = run.plan
    fields = {
        "target_spacing": list(plan.target_spacing),
        "crop_to_nonzero": plan.dim == 3,
        "patch_size": list(plan.patch_size),
        "layout": "(batch, channels, *patch_size), float32, normalised; output: logits",
        "overlap": plan.sliding_window_overlap,
        "blend": "gaussian",
        "sigma_scale": 0.125,
        "window_batch_size": plan.batch_size,
        "tta_flip_axes": [list(f) for f in flip_sets(True, plan.dim)[1:]],
        "label_values": list(plan.label_values),
        "regions": plan.regions,
        "activation": "sigmoid" if plan.regions else "softmax",
        "postprocess_lcc": plan.postprocess_lcc,
    }
    return ExportSpec(
        network=HeadOnly(net).eval(),
        example=example_input(plan.in_channels, plan.patch_size),
        runtime=RUNTIME,
        fields=fields,
    )


def served_model(run: Run) -> Segmenter:
    """The run's segmenter, loaded once, for the REST service (and ``medsight pacs``)."""
    from medsight.tasks.segment.serving import Segmenter

    return Segmenter(run)
