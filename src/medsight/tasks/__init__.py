"""Task families. Each registers itself in TASKS under its CLI name."""

from medsight.registry import Registry

TASKS: Registry = Registry("task")

__all__ = ["TASKS"]
