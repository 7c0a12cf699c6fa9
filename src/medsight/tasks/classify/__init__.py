"""The classification task family (registered as ``classify``): see :mod:`medsight.tasks.classify.family`."""

from medsight.tasks.classify.family import ClassifyFamily

__all__ = ["ClassifyFamily"]
