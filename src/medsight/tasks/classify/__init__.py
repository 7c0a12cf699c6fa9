"""The classify task: registers ``classify`` in medsight.tasks.TASKS."""

from medsight.tasks.classify.task import ClassifyTask

__all__ = ["ClassifyTask"]
