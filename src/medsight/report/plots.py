"""PNG plots for run folders and reports: training curves and image | reference | prediction overlays.

matplotlib is imported inside the functions and used through its object API (``Figure`` with the Agg
canvas), so nothing here touches pyplot's global state or needs a display.
"""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import DataError
from medsight.utils import atomic_write

_X_KEYS = ("epoch", "step")
_MAX_PANELS = 12
_MAX_CONTOURED_LABELS = 10


# ------------------------------------------------------------------------------------------ training curves


def read_metrics_jsonl(path: str | Path) -> tuple[list[dict[str, Any]], int]:
    """Records of a ``metrics.jsonl`` and the number of lines skipped as unreadable.

    A run still writing (or killed mid-write) may leave a truncated last line; such lines are counted,
    not fatal.
    """
    records: list[dict[str, Any]] = []
    bad = 0
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(obj, dict):
            records.append(obj)
        else:
            bad += 1
    return records, bad


def plot_curves(metrics_jsonl: str | Path, path: str | Path) -> Path:
    """Plot the training curves of ``metrics.jsonl`` (see :func:`curves_png`) into the PNG ``path``.

    Raises:
        DataError: when the file holds no series worth plotting.
    """
    records, _ = read_metrics_jsonl(metrics_jsonl)
    png = curves_png(records, source=str(metrics_jsonl))
    return atomic_write(Path(path), lambda tmp: tmp.write_bytes(png))


def curves_png(records: list[dict[str, Any]], source: str = "metrics.jsonl") -> bytes:
    """The training-curve figure of ``records`` as PNG bytes (see :func:`curves_figure`)."""
    return _png_bytes(curves_figure(records, source))


def curves_figure(records: list[dict[str, Any]], source: str = "metrics.jsonl") -> Any:
    """Loss(es) and validation metrics over epoch (or step), elapsed time on a second x-axis.

    One panel per quantity: every loss (train_loss, val_loss, a GAN's loss_g, ...) shares the first
    panel, then one per metric name (val_dice with val_dice_<class>, val_auc, ...). Left out (see
    :func:`select_curves`): bookkeeping keys (elapsed, lr, step, epoch_seconds, data_wait_fraction,
    skipped_steps, best_metric, ...), series constant over two or more records, and exact duplicates
    (``loss`` when it equals ``train_loss``).

    Returns:
        A matplotlib ``Figure`` (Agg, no pyplot state).

    Raises:
        DataError: when no series is left to plot.
    """
    panels = _curve_panels(records)
    if not panels:
        raise DataError(f"{source}: expected a loss or a validation metric that varies, found none")
    from matplotlib.figure import Figure

    names = list(panels)[:_MAX_PANELS]
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.3 * cols, 3.2 * rows), dpi=100, layout="constrained")
    clock = _clock(records)
    for i, name in enumerate(names):
        _draw_panel(fig.add_subplot(rows, cols, i + 1), name, panels[name], clock)
    return fig


def select_curves(records: list[dict[str, Any]]) -> tuple[list[str], dict[str, list[str]]]:
    """The keys :func:`curves_figure` plots, and the left-out ones by reason.

    Returns:
        ``(plotted, left_out)`` with ``left_out`` = ``{"bookkeeping": [...], "constant": [...],
        "duplicate": [...]}`` (keys in first-seen order).
    """
    keys = list(dict.fromkeys(k for r in records for k, v in r.items() if _is_num(v)))
    left_out: dict[str, list[str]] = {"bookkeeping": [], "constant": [], "duplicate": []}
    kept: dict[str, list[float]] = {}
    for key in sorted(keys, key=_preference):
        values = [float(r[key]) for r in records if _is_num(r.get(key)) and math.isfinite(float(r[key]))]
        if _BOOKKEEPING.match(key) or not values:
            left_out["bookkeeping"].append(key)
        elif len(values) > 1 and max(values) - min(values) <= 1e-12 * max(1.0, abs(values[0])):
            left_out["constant"].append(key)
        elif any(_same(values, other) for other in kept.values()):
            left_out["duplicate"].append(key)
        else:
            kept[key] = values
    first = {k: i for i, k in enumerate(keys)}.__getitem__
    return sorted(kept, key=first), {reason: sorted(v, key=first) for reason, v in left_out.items()}


_BOOKKEEPING = re.compile(
    r"^(epoch|step|elapsed|lr(_.*)?|best_.*|bad_rounds|skipped_steps|data_wait_fraction|sec_per_iter"
    r"|.*_seconds|.*_time)$"
)
_PREFIX = re.compile(r"^(train|val|valid|validation|test)_")

_Series = tuple[list[float], list[float]]  # (xs, ys)
_Clock = tuple[str, list[float], list[float]] | None  # (x key, xs, elapsed seconds) when known


def _same(a: list[float], b: list[float]) -> bool:
    """One series logged twice (e.g. the float32 ``loss`` and the float64 ``train_loss``)."""
    return len(a) == len(b) and bool(np.allclose(a, b, rtol=1e-5, atol=1e-8))


def _preference(key: str) -> tuple[int, str]:
    """Prefixed names first, so ``train_loss`` is kept and an identical ``loss`` is the duplicate."""
    return (0 if _PREFIX.match(key) else 1, key)


def _panel_name(key: str) -> str:
    base = _PREFIX.sub("", key)
    return "loss" if re.search(r"(^|_)loss($|_)", base) else base.split("_")[0]


def _curve_panels(records: list[dict[str, Any]]) -> dict[str, dict[str, tuple[str, _Series]]]:
    """``{panel: {key: (x label, (xs, ys))}}``: the loss panel, validation metrics, other logs."""
    plotted, _ = select_curves(records)
    rank = {"loss": 0}
    keys = sorted(plotted, key=lambda k: rank.get(_panel_name(k), 1 if k.startswith("val_") else 2))
    panels: dict[str, dict[str, tuple[str, _Series]]] = {}
    for key in keys:
        rows = [r for r in records if _is_num(r.get(key)) and math.isfinite(float(r[key]))]
        xlabel, xs = _x_axis(rows)
        panels.setdefault(_panel_name(key), {})[key] = (xlabel, (xs, [float(r[key]) for r in rows]))
    return panels


def _draw_panel(ax: Any, name: str, series: dict[str, tuple[str, _Series]], clock: _Clock) -> None:
    xlabel = next(iter(series.values()))[0]
    for key, (_, (xs, ys)) in series.items():
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=key)
    ax.set_xlabel(xlabel)
    ax.set_title(name)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize="small")
    if clock is not None and clock[0] == xlabel:
        _time_axis(ax, clock[1], clock[2])


def _clock(records: list[dict[str, Any]]) -> _Clock:
    """Elapsed seconds against the x key of the records carrying ``elapsed``, when it increases."""
    rows = [r for r in records if _is_num(r.get("elapsed"))]
    if len(rows) < 2:
        return None
    key, xs = _x_axis(rows)
    ts = [float(r["elapsed"]) for r in rows]
    increasing = all(b > a for a, b in zip(xs, xs[1:], strict=False))
    if key == "record" or not increasing or any(b < a for a, b in zip(ts, ts[1:], strict=False)):
        return None
    return key, xs, ts


def _time_axis(ax: Any, xs: list[float], seconds: list[float]) -> None:
    """A top x-axis reading the elapsed training time (minutes beyond 2 minutes, else seconds)."""
    scale, unit = (60.0, "min") if seconds[-1] > 120 else (1.0, "s")
    t = np.asarray(seconds) / scale
    x = np.asarray(xs)
    top = ax.secondary_xaxis("top", functions=(lambda v: _line(v, x, t), lambda v: _line(v, t, x)))
    top.set_xlabel(f"elapsed ({unit})", fontsize="small")
    top.tick_params(labelsize="small")


def _line(v: Any, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Piecewise-linear ``xp -> fp`` (increasing ``xp``), extended beyond its ends by the end segments."""
    v = np.asarray(v, dtype=np.float64)
    out = np.interp(v, xp, fp)
    lo, hi = (fp[1] - fp[0]) / (xp[1] - xp[0]), (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    out = np.where(v < xp[0], fp[0] + (v - xp[0]) * lo, out)
    return np.where(v > xp[-1], fp[-1] + (v - xp[-1]) * hi, out)


def _x_axis(rows: list[dict[str, Any]]) -> tuple[str, list[float]]:
    """Epoch when it identifies the rows (one per epoch), else step, else the record number."""
    present = [k for k in _X_KEYS if all(_is_num(r.get(k)) for r in rows)]
    for key in present:
        xs = [float(r[key]) for r in rows]
        if len(set(xs)) == len(xs):
            return key, xs
    if present:
        return present[-1], [float(r[present[-1]]) for r in rows]
    return "record", [float(i) for i in range(len(rows))]


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ------------------------------------------------------------------------------------------------ overlays


def save_overlay(
    image2d: np.ndarray,
    reference: np.ndarray,
    prediction: np.ndarray,
    path: str | Path,
    title: str = "",
) -> Path:
    """Write a PNG of three panels: image | image + reference | image + prediction.

    Args:
        image2d: ``(H, W)`` grey or ``(H, W, 3)`` RGB image (any range; grey is windowed to its
            0.5-99.5 percentiles).
        reference: ``(H, W)`` integer label map (0 = background).
        prediction: ``(H, W)`` integer label map.
        path: the PNG to write (atomically).
        title: figure title (e.g. the case id and its Dice).

    Each label value has one colour in both panels: a translucent fill plus its contour.
    """
    png = overlay_png(image2d, reference, prediction, title=title)
    return atomic_write(Path(path), lambda tmp: tmp.write_bytes(png))


def overlay_png(image2d: np.ndarray, reference: np.ndarray, prediction: np.ndarray, title: str = "") -> bytes:
    """The :func:`save_overlay` figure as PNG bytes."""
    from matplotlib.figure import Figure

    img = _display_image(image2d)
    ref = _label_map(reference, img.shape[:2], "reference")
    pred = _label_map(prediction, img.shape[:2], "prediction")
    h, w = img.shape[:2]
    panel_w = 3.6
    height = panel_w * h / w + (0.5 if title else 0.2)
    fig = Figure(figsize=(3 * panel_w, height), dpi=100, layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, labels, name in zip(axes, (None, ref, pred), ("image", "reference", "prediction"), strict=True):
        ax.imshow(img, cmap=None if img.ndim == 3 else "gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        if labels is not None:
            _draw_labels(ax, labels)
        ax.set_title(name, fontsize="medium")
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return _png_bytes(fig)


def middle_slice(labels: np.ndarray, axis: int = -1) -> int:
    """Index of the slice along ``axis`` of a 3D label map with the most foreground voxels.

    Returns the central slice when there is no foreground. Pass ``reference | prediction`` to
    consider both.
    """
    arr = np.asarray(labels)
    if arr.ndim != 3:
        raise DataError(f"labels: expected a 3D label map, got shape {arr.shape}")
    axis = axis % 3
    counts = np.count_nonzero(arr, axis=tuple(i for i in range(3) if i != axis))
    return int(np.argmax(counts)) if counts.any() else arr.shape[axis] // 2


def _display_image(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] for display, grey (H, W) or RGB (H, W, 3)."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 4:
        img = img[..., :3]
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[-1] == 3)):
        raise DataError(f"image2d: expected shape (H, W) or (H, W, 3), got {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    img = np.nan_to_num(img.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if img.ndim == 3 and img.min() >= 0.0 and img.max() <= 1.0:
        return img
    lo, hi = np.percentile(img, [0.5, 99.5])
    return np.clip((img - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(img)


def _label_map(labels: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.shape != shape:
        raise DataError(f"{name}: shape {arr.shape} does not match image2d {shape}")
    if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
        raise DataError(f"{name}: expected an integer label map, got non-integer values")
    return arr.astype(np.int64)


def _draw_labels(ax: Any, labels: np.ndarray) -> None:
    """Translucent colour fill per label value and, for a few labels, their contours."""
    from matplotlib import colormaps

    values = [int(v) for v in np.unique(labels) if v != 0]
    if not values:
        return
    cmap = colormaps["tab10"]
    rgba = np.zeros((*labels.shape, 4), dtype=np.float32)
    for v in values:
        rgba[labels == v] = (*cmap((v - 1) % 10)[:3], 0.4)
    ax.imshow(rgba, interpolation="nearest")
    for v in values[:_MAX_CONTOURED_LABELS]:
        mask = (labels == v).astype(np.float32)
        if 0 < mask.sum() < mask.size:
            ax.contour(mask, levels=[0.5], colors=[cmap((v - 1) % 10)], linewidths=1.0)


def _png_bytes(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
