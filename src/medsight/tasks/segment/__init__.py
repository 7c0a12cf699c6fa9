"""The segmentation task family (registered as ``segment``): see :mod:`medsight.tasks.segment.family`."""

from medsight.tasks.segment.family import SegmentFamily

__all__ = ["SegmentFamily"]
