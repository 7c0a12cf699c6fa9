"""Training-curve and overlay PNGs, and the slice chooser."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.errors import DataError
from medsight.report import middle_slice, plot_curves, read_metrics_jsonl, save_overlay
from medsight.report.plots import curves_figure, curves_png, select_curves


def _write_jsonl(path, records, extra_lines=()):
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def _run_records(n: int = 6, seconds_per_epoch: float = 30.0) -> list[dict]:
    """What the engine logs per epoch: losses, validation metrics and bookkeeping."""
    return [
        {
            "epoch": e + 1,
            "step": 10 * (e + 1),
            "loss": 1.0 / (e + 1),
            "train_loss": 1.0 / (e + 1),
            "train_seconds": 28.0,
            "data_wait_fraction": 0.02 + 0.001 * e,
            "skipped_steps": 0,
            "val_dice": 0.2 + 0.1 * e,
            "val_dice_liver": 0.2 + 0.1 * e,
            "lr": 0.01 * (1 - e / n),
            "elapsed": seconds_per_epoch * (e + 1),
            "epoch_seconds": seconds_per_epoch,
            "best_metric": 0.2 + 0.1 * e,
        }
        for e in range(n)
    ]


def _rgb(png: bytes) -> np.ndarray:
    with PILImage.open(io.BytesIO(png)) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB")).astype(int)


def _has_colour(arr: np.ndarray, hex_colour: str, min_pixels: int = 30) -> bool:
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(arr - rgb).sum(axis=-1) < 30).sum()) >= min_pixels


def test_curves_keep_losses_and_validation_metrics_only() -> None:
    plotted, left_out = select_curves(_run_records())
    assert plotted == ["train_loss", "val_dice"]
    assert left_out == {
        "bookkeeping": [
            "epoch",
            "step",
            "train_seconds",
            "data_wait_fraction",
            "skipped_steps",
            "lr",
            "elapsed",
            "epoch_seconds",
            "best_metric",
        ],
        "constant": [],
        "duplicate": ["loss", "val_dice_liver"],  # the same series under a second name
    }


def test_constant_task_logs_are_left_out_but_a_single_epoch_is_plotted() -> None:
    records = [
        {"epoch": e, "train_loss": 1.0 - 0.1 * e, "kl": 0.5, "val_auc": 0.6 + 0.01 * e} for e in range(3)
    ]
    plotted, left_out = select_curves(records)
    assert plotted == ["train_loss", "val_auc"] and left_out["constant"] == ["kl"]
    assert select_curves([{"epoch": 1, "train_loss": 0.7}])[0] == ["train_loss"]


def test_curves_figure_panels_and_elapsed_time_axis() -> None:
    fig = curves_figure(_run_records())
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["loss", "dice"]  # loss first, then the monitored metric
    assert all(ax.get_xlabel() == "epoch" for ax in axes)
    assert [line.get_label() for line in axes[0].get_lines()] == ["train_loss"]
    tops = [child for ax in axes for child in ax.child_axes]
    assert len(tops) == 2 and all(t.get_xlabel() == "elapsed (min)" for t in tops)  # 180 s > 2 min
    short = curves_figure(_run_records(seconds_per_epoch=5.0))
    assert [c.get_xlabel() for ax in short.axes if ax.get_title() for c in ax.child_axes] == [
        "elapsed (s)"
    ] * 2


def test_plot_curves_png_shows_the_curves(tmp_path) -> None:
    records = _run_records()
    src = _write_jsonl(tmp_path / "metrics.jsonl", records, extra_lines=['{"epoch": 7, "train_lo'])
    out = plot_curves(src, tmp_path / "plots" / "curves.png")
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["curves.png"]  # no temp file left
    arr = _rgb(out.read_bytes())
    h, w = arr.shape[:2]
    assert 2.0 < w / h < 3.5  # two panels side by side (loss, dice), not one per logged key
    for half in (arr[:, : w // 2], arr[:, w // 2 :]):
        assert _has_colour(half, "#1f77b4")  # each panel draws its curve in the first cycle colour
    falling = [{**r, "val_dice": 0.9 - 0.1 * i} for i, r in enumerate(records)]
    other = _rgb(curves_png(falling))
    assert other.shape == arr.shape
    diff = np.abs(other - arr).sum(axis=(0, 2))
    assert diff[: w // 2 - 10].sum() == 0  # the loss panel is unchanged
    assert diff[w // 2 + 10 :].sum() > 0  # the dice panel shows the other curve


def test_several_losses_share_the_loss_panel_in_their_colours() -> None:
    records = [
        {"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1), "val_auc": 0.5 + 0.05 * e}
        for e in range(5)
    ]
    fig = curves_figure(records)
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["train_loss", "val_loss"]
    arr = _rgb(curves_png(records))
    left = arr[:, : arr.shape[1] // 2]
    assert _has_colour(left, "#1f77b4") and _has_colour(left, "#ff7f0e")


def test_read_metrics_jsonl_skips_bad_lines(tmp_path) -> None:
    src = _write_jsonl(tmp_path / "m.jsonl", [{"epoch": 0, "loss": 1.0}], extra_lines=["[1, 2]", "{oops", ""])
    records, bad = read_metrics_jsonl(src)
    assert records == [{"epoch": 0, "loss": 1.0}] and bad == 2


def test_plot_curves_without_numbers_raises(tmp_path) -> None:
    src = _write_jsonl(tmp_path / "m.jsonl", [{"epoch": 0, "note": "start"}, {"epoch": 1, "ok": True}])
    with pytest.raises(DataError, match="m.jsonl"):
        plot_curves(src, tmp_path / "c.png")


def _overlay_array(path) -> np.ndarray:
    with PILImage.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


def test_overlay_draws_reference_and_prediction_in_their_panels(tmp_path) -> None:
    yy, xx = np.mgrid[:48, :48]
    image = np.sin(xx / 5.0) + yy / 48.0
    mask = (((yy - 24) ** 2 + (xx - 20) ** 2) < 100).astype(np.int64)
    empty = np.zeros_like(mask)
    a = _overlay_array(save_overlay(image, mask, empty, tmp_path / "a.png", title="case 1"))
    b = _overlay_array(save_overlay(image, empty, mask, tmp_path / "b.png", title="case 1"))
    assert a.shape == b.shape
    w = a.shape[1]
    diff = np.abs(a - b).sum(axis=(0, 2))
    assert diff[: w // 3 - 5].sum() == 0  # the image panel is the same
    assert diff[w // 3 + 5 : 2 * w // 3 - 5].sum() > 0  # reference drawn in the middle panel only in a
    assert diff[2 * w // 3 + 5 :].sum() > 0  # prediction drawn in the right panel only in b


def test_overlay_accepts_rgb_and_checks_shapes(tmp_path) -> None:
    rgb = np.random.default_rng(0).integers(0, 255, size=(20, 30, 3), dtype=np.uint8)
    labels = np.zeros((20, 30), int)
    labels[5:10, 5:20] = 2
    assert save_overlay(rgb, labels, labels, tmp_path / "rgb.png").is_file()
    with pytest.raises(DataError, match=r"prediction: shape \(20, 29\)"):
        save_overlay(rgb, labels, labels[:, :29], tmp_path / "bad.png")
    with pytest.raises(DataError, match="image2d"):
        save_overlay(np.zeros((2, 20, 30)), labels, labels, tmp_path / "bad.png")


def test_middle_slice() -> None:
    vol = np.zeros((4, 5, 6), int)
    vol[1:3, 1:3, 4] = 1
    vol[1, 1, 2] = 1
    assert middle_slice(vol) == 4
    assert middle_slice(vol, axis=0) == 1  # 3 voxels in slice 1, 2 in slice 2
    assert middle_slice(np.zeros((4, 5, 6))) == 3
    with pytest.raises(DataError, match="3D"):
        middle_slice(np.zeros((4, 5)))


def test_report_curves_section_says_what_is_plotted(tmp_path) -> None:
    from medsight.report.builder import _curves_section

    html = _curves_section(_write_jsonl(tmp_path / "metrics.jsonl", _run_records()))
    assert html.count("data:image/png;base64,") == 1
    assert "plotted: train_loss, val_dice;" in html
    assert "bookkeeping: epoch, step, train_seconds" in html and "duplicate: loss, val_dice_liver" in html
