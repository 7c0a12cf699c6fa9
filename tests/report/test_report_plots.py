"""Training-curve and overlay PNGs, and the slice chooser."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.errors import DataError
from medsight.report import middle_slice, plot_curves, read_metrics_jsonl, save_overlay


def _write_jsonl(path, records, extra_lines=()):
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_plot_curves_writes_a_png(tmp_path) -> None:
    records = [{"epoch": e, "step": 10 * e, "train_loss": 1.0 / (e + 1), "lr": 0.01} for e in range(5)]
    records += [{"epoch": e, "val_dice": 0.1 * e, "val_loss": 0.9 / (e + 1)} for e in range(5)]
    src = _write_jsonl(tmp_path / "metrics.jsonl", records, extra_lines=['{"epoch": 5, "train_lo'])
    out = plot_curves(src, tmp_path / "plots" / "curves.png")
    with PILImage.open(out) as im:
        assert im.format == "PNG"
        # panels loss (train+val), lr, dice: three side by side
        assert im.size[0] > 2 * im.size[1]
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["curves.png"]  # no temp file left


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
