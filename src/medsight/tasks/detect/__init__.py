"""The detection task family (registered as ``detect``): see :mod:`medsight.tasks.detect.family`."""

from medsight.tasks.detect.family import DetectFamily

__all__ = ["DetectFamily"]
