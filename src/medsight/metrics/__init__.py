"""Metric functions per task and the one metrics table format (per-case rows + bootstrap CIs)."""

from __future__ import annotations

from medsight.metrics.classification import (
    bootstrap_summary,
    choose_thresholds,
    confusion_matrix,
    expected_calibration_error,
    point_metrics,
    predict_labels,
)
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
    "bootstrap_summary",
    "case_metrics",
    "choose_thresholds",
    "confusion_matrix",
    "expected_calibration_error",
    "pixel_metrics",
    "point_metrics",
    "predict_labels",
    "segmentation_metrics",
    "thresholded_jaccard",
]
