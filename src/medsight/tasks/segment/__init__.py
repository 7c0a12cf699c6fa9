"""The segmentation task (registered as ``segment``)."""

from medsight.tasks.segment.task import SegmentTask

__all__ = ["SegmentTask"]
