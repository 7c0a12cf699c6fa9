"""Self-contained HTML reports and PNG plots; one builder for every task.

matplotlib is imported only when a plot is drawn, so importing this package stays light::

    from medsight.report import build_report
    build_report("runs/segment-drive-20250101-120000")
"""

from __future__ import annotations

from medsight.report.builder import build_report
from medsight.report.plots import middle_slice, overlay_png, plot_curves, read_metrics_jsonl, save_overlay

__all__ = ["build_report", "middle_slice", "overlay_png", "plot_curves", "read_metrics_jsonl", "save_overlay"]
