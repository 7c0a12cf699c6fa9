"""The evaluation's figures: precision-recall curves per class (IoU 0.5), the FROC curve, and the best
and worst images with reference (green) and predicted (red, scored) boxes, in eval/<split>/.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from medsight.data.spec import Case
from medsight.utils import atomic_write

N_SHOWN = 3  # best and worst images in the report
SHOWN_SCORE = 0.3  # predicted boxes drawn from this score


def pr_curve(
    preds: list[dict[str, Any]], refs: list[dict[str, Any]], cls: int, iou: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision of class ``cls`` over the score-ranked detections, COCO's matching at ``iou``."""
    from medsight.metrics.detection import _match_class, _parse

    p, r = _parse(preds, refs)
    m = _match_class(p, r, cls, np.array([iou]), 100)
    tp = np.cumsum(m.tp[0])
    fp = np.cumsum(~m.tp[0])
    total = max(float(m.n_ref.sum()), 1.0)
    return tp / total, tp / np.maximum(tp + fp, 1)


def write_figures(
    folder: Path,
    cases: list[Case],
    preds: list[dict[str, Any]],
    refs: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    plan: Any,
) -> None:
    """PR curves, the FROC curve and the best / worst images (eval/<split>/cases/)."""
    from medsight.metrics.detection import froc

    curves = [(name, *pr_curve(preds, refs, k)) for k, name in enumerate(plan.class_names)]
    _save(folder / "precision_recall.png", _plot_pr(curves))
    f = froc(preds, refs)
    _save(folder / "froc.png", _plot_froc(f))
    _write_cases(folder / "cases", cases, preds, refs, rows, plan)


def _plot_pr(curves: list[tuple[str, np.ndarray, np.ndarray]]) -> bytes:
    fig, ax = _figure()
    for name, recall, precision in curves:
        ax.plot(np.r_[0, recall], np.r_[1, precision], label=name)
    ax.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1.02),
        ylim=(0, 1.02),
        title="Precision-recall (IoU 0.5)",
    )
    ax.legend(loc="lower left", fontsize=8)
    return _png(fig)


def _plot_froc(f: dict[str, Any]) -> bytes:
    fig, ax = _figure()
    fps, sens = np.asarray(f["fps_per_image"]), np.asarray(f["sensitivity"])
    ax.plot(np.maximum(fps, 1e-3), sens, drawstyle="steps-post")
    ax.scatter(f["fp_rates"], f["sensitivity_at"], color="C3", zorder=3, label=f"CPM {f['cpm']:.3f}")
    ax.set_xscale("log")
    ax.set(
        xlabel="false positives per image", ylabel="sensitivity (IoU >= 0.1)", ylim=(0, 1.02), title="FROC"
    )
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def _figure() -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 3.6), dpi=100, layout="constrained")
    return fig, fig.subplots()


def _png(fig: Any) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _save(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _quality(row: dict[str, Any]) -> float:
    """Ranks images best first: mean best IoU of the references, less 0.1 per false positive."""
    iou = row["mean_best_iou"]
    return (1.0 if iou is None or math.isnan(iou) else float(iou)) - 0.1 * row["fp"]


def _write_cases(
    folder: Path,
    cases: list[Case],
    preds: list[dict[str, Any]],
    refs: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    plan: Any,
) -> None:
    from medsight.tasks.detect.drawing import overlay, png_bytes

    ranked = sorted(range(len(rows)), key=lambda i: -_quality(rows[i]))
    best, worst = ranked[:N_SHOWN], [i for i in ranked[::-1][:N_SHOWN] if i not in ranked[:N_SHOWN]]
    for kind, picks in (("best", best), ("worst", worst)):
        for i in picks:
            p, keep = preds[i], preds[i]["scores"] >= SHOWN_SCORE
            names = [plan.class_names[int(k)] for k in p["labels"][keep]]
            rgb = overlay(
                cases[i].read(), refs[i]["boxes"], p["boxes"][keep], p["scores"][keep].tolist(), names
            )
            iou = rows[i]["mean_best_iou"]
            iou_text = "negative" if iou is None or math.isnan(iou) else f"iou{iou:.2f}"
            name = f"{kind}-{cases[i].case_id}-{iou_text}-fp{rows[i]['fp']}".replace("/", "_")
            _save(folder / f"{name}.png", png_bytes(rgb))
