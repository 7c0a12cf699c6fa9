"""Task families, one folder each, each registering itself in :data:`medsight.task_registry.TASKS`.

A new family is its folder ``tasks/<name>/`` (implementing :class:`medsight.tasks.contract.Task`),
its metrics and models modules, its tests, and one entry in ``FAMILIES`` below.
"""

from __future__ import annotations

import importlib

from medsight.task_registry import TASKS

FAMILIES = (
    "medsight.tasks.segment",
    "medsight.tasks.classify",
    "medsight.tasks.anomaly",
    "medsight.tasks.enhance",
    "medsight.tasks.detect",
    "medsight.tasks.register",
    "medsight.tasks.synthesize",
)
DEFAULT = "segment"  # the family a command uses when it is given none


def import_families() -> None:
    """Import each family package in FAMILIES (importing registers it)."""
    for module in FAMILIES:
        importlib.import_module(module)


__all__ = ["DEFAULT", "FAMILIES", "TASKS", "import_families"]
