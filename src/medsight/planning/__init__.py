"""Planning, shared by every task family: the plan base (a reason per field), the device budgets, the
measured-width search, and the one planner entry (:func:`plan_dataset`), which dispatches to the
family's own planner (``medsight.tasks.<name>.planning``) through the registry."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from medsight.planning.budget import CPU_BUDGET, GPU_BUDGET, DeviceBudget, device_budget
from medsight.planning.plan import ChannelNorm, PlanBase

if TYPE_CHECKING:
    from medsight.config import RunConfig
    from medsight.tasks.contract import TaskData


def plan_dataset(
    source: str | Path, config: RunConfig | None = None, *, measure: bool = True
) -> tuple[TaskData, PlanBase]:
    """Load ``source`` with the config's task family and plan for it: ``(data, plan)``.

    The one planner entry: it dispatches through the task registry, so every family plans the same way
    (its ``Task.load`` then ``Task.plan``, under the config's time budget and ``plan:`` overrides).

    Example:
        >>> data, plan = plan_dataset("drive", load_config(None, ["train.time_budget=10m"]))
    """
    from medsight.config import RunConfig
    from medsight.task_registry import get_task

    config = config or RunConfig()
    task = get_task(config.task)
    data = task.load(source, config)
    return data, task.plan(data, config, measure=measure)


def planning_budget(config: RunConfig) -> float | None:
    """The time budget the planner sizes the network for: with adversarial training each step also runs
    the attack (``steps`` more forward-backward passes, one more for TRADES), so the budget is divided."""
    budget, adversarial = config.train.time_budget_seconds, config.train.adversarial
    if budget is None or adversarial is None:
        return budget
    return budget / (1 + adversarial.steps + (adversarial.method == "trades"))


__all__ = [
    "CPU_BUDGET",
    "GPU_BUDGET",
    "ChannelNorm",
    "DeviceBudget",
    "PlanBase",
    "device_budget",
    "plan_dataset",
    "planning_budget",
]
