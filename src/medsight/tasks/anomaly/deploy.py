"""What deploy/ needs from the anomaly family: the network to export and the model to serve.

``AnomalyFamily.export_spec`` / ``served_model`` (the Task contract) delegate to these functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medsight.deploy.export import ExportSpec
    from medsight.runs import Run
    from medsight.tasks.anomaly.serving import AnomalyScorer

RUNTIME = f"{__package__}.runtime"  # this folder's torch-free runtime, whatever the folder is called


def export_spec(run: Run) -> ExportSpec:
    """The run's model and score as one network (:class:`~medsight.tasks.anomaly.scoring.Scorer`) on an
    example input in [0, 1] of the plan's size, and what the runtime needs beyond the plan."""
    import torch

    from medsight.deploy.export import ExportSpec
    from medsight.tasks.anomaly.pipeline import load_model
    from medsight.tasks.anomaly.scoring import Scorer

    _, model = load_model(run, "cpu")
    plan = run.plan
    example = torch.rand((1, plan.in_channels, *plan.input_size), generator=torch.Generator().manual_seed(0))
    fields = {
        "input_size": list(plan.input_size),
        "layout": "(batch, channels, *input_size), float32, normalised to [0, 1]",
        "output_layout": "(batch, 1 + prod(input_size)): the image score, then the anomaly map (C order)",
        "score": plan.score,
        "threshold": plan.threshold,
        "normal_class": plan.normal_class,
    }
    return ExportSpec(network=Scorer(model, plan).eval(), example=example, runtime=RUNTIME, fields=fields)


def served_model(run: Run) -> AnomalyScorer:
    """The run's model, loaded once, for the REST service."""
    from medsight.tasks.anomaly.serving import AnomalyScorer

    return AnomalyScorer(run)
