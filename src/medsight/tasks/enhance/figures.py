"""The report's panels of the best and worst cases: degraded, each classical method, ours, the reference,
and below each its absolute error map, every error map on the same scale (matplotlib, Agg canvas)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from medsight.tasks.enhance.slices import Sample
from medsight.utils import atomic_write

N_SHOWN = 2  # best and worst cases each


def panel_png(title: str, sample: Sample, outputs: dict[str, np.ndarray], simulated: bool) -> bytes:
    """One slice: the degraded input, every method's output and the reference, with error maps."""
    from matplotlib.figure import Figure

    ref = sample.reference
    images = {"degraded": sample.degraded, **outputs, "reference": ref}
    lo, hi = float(np.percentile(ref, 0.5)), float(np.percentile(ref, 99.5))
    errors = {k: np.abs(v - ref) for k, v in images.items() if k != "reference"}
    emax = max(float(np.percentile(e, 99.5)) for e in errors.values()) or 1.0
    cols = len(images)
    fig = Figure(figsize=(2.2 * cols, 4.8), dpi=90, layout="constrained")
    for j, (name, img) in enumerate(images.items()):
        ax = fig.add_subplot(2, cols, j + 1)
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
        if name in errors:
            ax = fig.add_subplot(2, cols, cols + j + 1)
            im = ax.imshow(errors[name], cmap="inferno", vmin=0, vmax=emax)
            ax.set_title(f"|{name} - ref|", fontsize=8)
            ax.axis("off")
    fig.colorbar(im, ax=fig.axes[-1], shrink=0.7, label="abs. error (same scale)")
    note = " (k-space simulated from magnitude images)" if simulated else ""
    fig.suptitle(title + note, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_panels(
    folder: Path,
    cases: list[tuple[str, list[Sample], dict[str, np.ndarray]]],
    score: dict[str, float],
    plan: Any,
) -> None:
    """PNG panels of the N_SHOWN best and worst cases by our SSIM (their middle slice)."""
    ranked = sorted(cases, key=lambda c: score.get(c[0], -np.inf), reverse=True)
    picks = [("best", c) for c in ranked[:N_SHOWN]]
    picks += [("worst", c) for c in ranked[::-1][:N_SHOWN] if c not in ranked[:N_SHOWN]]
    for kind, (case_id, samples, outputs) in picks:
        mid = len(samples) // 2
        title = f"{kind}: {case_id}, slice {mid} (SSIM {score.get(case_id, float('nan')):.3f})"
        png = panel_png(title, samples[mid], {k: v[mid] for k, v in outputs.items()}, plan.simulated_kspace)
        name = f"{kind}-{case_id}".replace("/", "_")
        atomic_write(folder / f"{name}.png", lambda tmp, data=png: tmp.write_bytes(data))
