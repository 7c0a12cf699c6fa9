"""Planning: a dataset fingerprint -> a Plan (what to train, and why)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medsight.planning.plan import ChannelNorm, Plan, PlanBase
from medsight.planning.planner import CPU_BUDGET, GPU_BUDGET, DeviceBudget, device_budget, plan_segmentation


def plan_dataset(
    dataset: Any,
    *,
    task: str = "segment",
    device: str | None = None,
    measure: bool = True,
    overrides: dict[str, Any] | None = None,
    data_root: str | Path | None = None,
    time_budget_s: float | None = None,
) -> Plan:
    """Fingerprint ``dataset`` (anything ``load_dataset`` takes, or a Fingerprint) and plan for it."""
    from medsight.data import fingerprint_dataset, load_dataset

    fp = (
        dataset
        if hasattr(dataset, "median_spacing")
        else fingerprint_dataset(load_dataset(dataset, data_root=data_root))
    )
    if task != "segment":
        from medsight.errors import ConfigError

        raise ConfigError(f"plan: task {task!r} has no planner yet; known: segment")
    plan = plan_segmentation(fp, budget=device_budget(device), measure=measure, time_budget_s=time_budget_s)
    return plan.with_overrides(overrides or {})


def plan_class(task: str) -> type[PlanBase]:
    """The plan model of a task family (what its plan.json holds)."""
    if task == "classify":
        from medsight.planning.classify import ClassifyPlan

        return ClassifyPlan
    return Plan


__all__ = [
    "CPU_BUDGET",
    "GPU_BUDGET",
    "ChannelNorm",
    "DeviceBudget",
    "Plan",
    "PlanBase",
    "plan_class",
    "device_budget",
    "plan_dataset",
    "plan_segmentation",
]
