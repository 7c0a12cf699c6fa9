"""What deploy/ needs from the enhance family: the network to export and the model to serve."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medsight.deploy.export import ExportSpec
    from medsight.runs import Run
    from medsight.tasks.enhance.serving import Enhancer

RUNTIME = f"{__package__}.runtime"  # this folder's torch-free runtime, whatever the folder is called


def export_spec(run: Run) -> ExportSpec:
    """The run's network on an example slice of the plan's size, and what the runtime needs."""
    from medsight.deploy.export import ExportSpec, example_input
    from medsight.tasks.enhance.pipeline import load_model

    _, model = load_model(run, "cpu")
    plan = run.plan
    example = example_input(plan.in_channels, plan.slice_size)
    if plan.kspace_input:  # a real mask channel: the last input channel is 0/1
        example[:, -1] = (example[:, -1] > 0).float()
    fields = {
        "slice_size": list(plan.slice_size),
        "layout": "(batch, channels, *slice_size), float32, normalised (see intensity); output: channel 0",
        "intensity": plan.intensity,
        "degradation": plan.degradation,
        "kspace_input": plan.kspace_input,
    }
    return ExportSpec(network=model, example=example, runtime=RUNTIME, fields=fields)


def served_model(run: Run) -> Enhancer:
    from medsight.tasks.enhance.serving import Enhancer

    return Enhancer(run)
