"""Metric functions per task and the one metrics table format (per-case rows + bootstrap CIs)."""

from __future__ import annotations

from medsight.metrics.segmentation import (
    case_metrics,
    pixel_metrics,
    segmentation_metrics,
    thresholded_jaccard,
)
from medsight.metrics.table import MetricTable, bootstrap_ci

__all__ = [
    "MetricTable",
    "bootstrap_ci",
    "case_metrics",
    "pixel_metrics",
    "segmentation_metrics",
    "thresholded_jaccard",
]
