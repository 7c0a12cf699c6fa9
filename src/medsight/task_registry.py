"""The ``TASKS`` registry: every task family under its CLI name, found without naming one.

Shared code (api, cli, runs) reaches a task family only through :func:`get_task`. The families are
imported on first use from :mod:`medsight.tasks` (its ``FAMILIES`` list), so this module stays light
and below everything that uses it.

Example::

    from medsight.task_registry import get_task
    task = get_task(config.task)          # unknown names get a "did you mean"
    data = task.load(config.data.dataset, config)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from medsight.registry import Registry

if TYPE_CHECKING:
    from medsight.tasks.contract import Task

TASKS: Registry[Task] = Registry("task")


def load_families() -> Registry[Task]:
    """Import every task family (each registers itself in TASKS) and return the registry."""
    importlib.import_module("medsight.tasks").import_families()
    return TASKS


def get_task(name: str) -> Task:
    """The task family registered as ``name``."""
    return load_families().get(name)


def task_names() -> list[str]:
    return load_families().names()


def default_task() -> str:
    """The family a command uses when none is given (``medsight.tasks.DEFAULT``)."""
    return str(importlib.import_module("medsight.tasks").DEFAULT)
