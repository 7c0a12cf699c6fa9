"""The robustness part of a report: the metric against epsilon per attack, example perturbations
magnified beside the image, detector AUROC; read from a folder's ``robustness.json``.

Plots use matplotlib's object API on the Agg canvas (as :mod:`medsight.report.plots`).
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from medsight.report import html as H
from medsight.report.plots import _png_bytes

Section = tuple[str, str, str]
MAGNIFY_TO = 0.5  # the perturbation is scaled so its largest value shows as half the grey range


def metric_vs_eps_png(report: dict[str, Any]) -> bytes | None:
    """The headline metric (accuracy or Dice) against epsilon, one line per attack, clean at 0 (None
    without attacks)."""
    from matplotlib.figure import Figure

    if not report["results"]:
        return None
    metric = report["metric"]
    fig = Figure(figsize=(5.5, 3.8), dpi=100)
    ax = fig.add_subplot()
    for attack in dict.fromkeys(r["attack"] for r in report["results"]):
        rows = [r for r in report["results"] if r["attack"] == attack]
        xs = [0.0] + [r["eps_unit"] * 255 for r in rows]
        ys = [report["clean"][metric]] + [r["metrics"][metric] for r in rows]
        ax.plot(xs, ys, marker="o", label=attack)
    ax.set_xlabel("epsilon (x 1/255 of the intensity range)")
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{metric} under attack ({report['split']}, {report['cases']} cases)")
    fig.tight_layout()
    return _png_bytes(fig)


def metric_vs_shift_png(report: dict[str, Any]) -> bytes | None:
    """The headline metric against the severity of each natural shift, clean at 0 (None without shifts)."""
    from matplotlib.figure import Figure

    rows = report.get("shifts") or []
    if not rows:
        return None
    metric = report["metric"]
    fig = Figure(figsize=(5.5, 3.8), dpi=100)
    ax = fig.add_subplot()
    for shift in dict.fromkeys(r["shift"] for r in rows):
        mine = [r for r in rows if r["shift"] == shift]
        xs = [0] + [r["severity"] for r in mine]
        ax.plot(xs, [report["clean"][metric]] + [r["metrics"][metric] for r in mine], marker="o", label=shift)
    ax.set_xticks([0, 1, 2, 3], ["clean", "1", "2", "3"])
    ax.set_xlabel("severity")
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"{metric} under natural shifts ({report['split']}, {report['cases']} cases)")
    fig.tight_layout()
    return _png_bytes(fig)


def perturbation_png(rows: list[dict[str, Any]], title: str) -> bytes:
    """One row per example: clean image | perturbation (magnified, grey = 0) | adversarial image.

    Each row: ``clean`` and ``adversarial`` unit-space arrays (C, *spatial), the middle slice of a
    volume shown; ``clean_text`` / ``adv_text`` the model's answers; ``case`` the case id.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.0 * max(1, len(rows))), dpi=100)
    for i, row in enumerate(rows):
        clean, adv = _display(row["clean"]), _display(row["adversarial"])
        delta = adv - clean
        peak = float(np.abs(delta).max()) or 1.0
        magnified = np.clip(0.5 + delta * (MAGNIFY_TO / peak), 0, 1)
        panels = (
            (clean, f"{row['case']}\n{row['clean_text']}"),
            (magnified, f"perturbation x{MAGNIFY_TO / peak:.0f}\nmax |delta| {peak * 255:.2f}/255"),
            (adv, f"adversarial\n{row['adv_text']}"),
        )
        for j, (img, text) in enumerate(panels):
            ax = fig.add_subplot(len(rows), 3, 3 * i + j + 1)
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(text, fontsize=8)
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png_bytes(fig)


def _display(unit: np.ndarray) -> np.ndarray:
    """(C, *spatial) in [0, 1] -> (H, W) or (H, W, 3): channel 0 (RGB when 3), a volume's middle slice."""
    arr = np.asarray(unit, dtype=np.float32)
    while arr.ndim > 3:  # volumes: the middle of the last axis
        arr = arr[..., arr.shape[-1] // 2]
    if arr.shape[0] == 3:
        return np.moveaxis(arr, 0, -1)
    return arr[0]


def robustness_sections(folder: Path) -> list[Section]:
    """Report sections of ``folder/robustness.json`` (none when absent); the example figures in
    ``folder/examples/`` are added by the report builder."""
    path = folder / "robustness.json"
    if not path.is_file():
        return []
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [("robustness", "Robustness", H.note(f"robustness.json could not be read ({exc})."))]
    metric = report.get("metric", "accuracy")
    rows = [["clean", "-", "-", report.get("clean", {}).get(metric), "-", "-"]]
    for r in report.get("results", []):
        pert = r.get("perturbation", {})
        rows.append(
            [
                r["attack"],
                r["eps"],
                r["eps_unit"],
                r["metrics"].get(metric),
                pert.get("linf_mean"),
                r.get("seconds"),
            ]
        )
    intro = escape(
        f"{H.fmt(report.get('cases'))} cases of the {H.fmt(report.get('split'))} split of run "
        f"{H.fmt(report.get('run'))}; epsilon in the attack space (intensities scaled to [0, 1]); "
        f"settings {H.fmt(report.get('settings'))}."
    )
    body = f"<p>{intro}</p>" + H.table(["attack", "eps", "eps (unit)", metric, "mean L-inf", "seconds"], rows)
    plot = folder / "metric_vs_eps.png"
    if plot.is_file():
        body += H.png_img(plot.read_bytes(), "metric vs eps")
    sections: list[Section] = []
    if report.get("results"):
        sections.append(("robustness", f"Robustness: {metric} under attack", body))
    if report.get("shifts"):
        sections.append(("shifts", f"Robustness: {metric} under natural shifts", _shift_body(report, folder)))
    detectors = _detector_table(report)
    if detectors:
        sections.append(("detectors", "Detectors of adversarial inputs (AUROC)", detectors))
    smoothing = report.get("smoothing")
    if smoothing:
        certified = smoothing.get("certified_accuracy", {})
        table = H.table(["L2 radius", "certified accuracy"], list(certified.items()))
        note = f"sigma {H.fmt(smoothing.get('sigma'))}, {H.fmt(smoothing.get('n'))} noisy copies per case, "
        note += f"abstained on {H.fmt(smoothing.get('abstained'))} of the cases"
        sections.append(("smoothing", "Randomised smoothing", f"<p>{escape(note)}</p>{table}"))
    return sections


def _shift_body(report: dict[str, Any], folder: Path) -> str:
    """A table (shift x severity, with each severity's parameter) and the curve per shift."""
    metric = report.get("metric", "accuracy")
    clean = report.get("clean", {}).get(metric)
    rows = [["clean", "-", "-", clean, "-"]]
    for r in report["shifts"]:
        value = r["metrics"].get(metric)
        drop = clean - value if isinstance(clean, float) and isinstance(value, float) else None
        rows.append([r["shift"], r["severity"], r["parameter"], value, drop])
    intro = "Each shift at severities 1-3 (parameters in medsight.robustness.shifts); label maps move with "
    intro += "the image under geometric shifts."
    body = f"<p>{escape(intro)}</p>" + H.table(["shift", "severity", "parameter", metric, "drop"], rows)
    plot = folder / "metric_vs_shift.png"
    if plot.is_file():
        body += H.png_img(plot.read_bytes(), "metric vs shift")
    return body


def _detector_table(report: dict[str, Any]) -> str:
    results = [r for r in report.get("results", []) if r.get("detectors")]
    if not results:
        return ""
    names = list(dict.fromkeys(n for r in results for n in r["detectors"]))
    rows = [[r["attack"], r["eps"], *(r["detectors"].get(n) for n in names)] for r in results]
    return H.table(["attack", "eps", *names], rows)
