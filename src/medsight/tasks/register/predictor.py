"""``medsight predict --run``: every moving image under ``--input`` registered to ``--reference`` /
``--fixed`` (default: the run's atlas and its labels) with the run's network (PyTorch); the outputs are
those of :mod:`medsight.tasks.register.outputs`."""

from __future__ import annotations

from pathlib import Path

from medsight.runs import Run
from medsight.tasks.contract import PredictRequest
from medsight.tasks.register.outputs import register_path


def predict_request(run: Run, request: PredictRequest) -> list[Path]:
    from medsight.tasks.register.learned import LearnedRegistration

    plan = run.plan
    reference = getattr(request, "reference", None)
    fixed = Path(reference) if reference is not None else Path(plan.atlas)  # type: ignore[attr-defined]
    labels = None if reference is not None else plan.atlas_labels  # type: ignore[attr-defined]
    return register_path(
        request.input,
        request.output,
        fixed,
        Path(labels) if labels else None,
        lambda: LearnedRegistration(run).transform,
        overwrite=request.overwrite,
        shard=request.shard,
    )
