"""What deploy/ needs from the classify family: the network to export and the model to serve.

``ClassifyFamily.export_spec`` / ``served_model`` (the Task contract) delegate to these functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medsight.deploy.export import ExportSpec
    from medsight.runs import Run
    from medsight.tasks.classify.serving import Classifier

RUNTIME = f"{__package__}.runtime"  # this folder's torch-free runtime, whatever the folder is called


def export_spec(run: Run) -> ExportSpec:
    """The run's network on an example input of the plan's size, and what the runtime needs beyond
    the plan: input size, problem, activation, thresholds, TTA flips."""
    from medsight.deploy.export import ExportSpec, example_input
    from medsight.tasks.classify.pipeline import load_model

    _, model = load_model(run, "cpu")
    plan = run.plan
    fields = {
        "input_size": list(plan.input_size),
        "layout": "(batch, channels, *input_size), float32, normalised",
        "problem": plan.problem,
        "activation": "sigmoid" if plan.problem == "multilabel" else "softmax",
        "thresholds": plan.thresholds,
        "tta_flip_axes": [[a] for a in plan.flip_axes],
    }
    return ExportSpec(
        network=model,
        example=example_input(plan.in_channels, plan.input_size),
        runtime=RUNTIME,
        fields=fields,
    )


def served_model(run: Run) -> Classifier:
    """The run's classifier, loaded once, for the REST service."""
    from medsight.tasks.classify.serving import Classifier

    return Classifier(run)
