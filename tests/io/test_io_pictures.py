"""2D pictures: PNG/JPEG/TIFF/GIF read and write, modes, scaling, corrupt files, real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.errors import DataError
from medsight.io import Image, read_image, write_image


def _grey() -> np.ndarray:
    return (np.arange(12 * 10).reshape(1, 12, 10) * 2 % 256).astype(np.uint8)


def test_png_grey_round_trip(tmp_path: Path) -> None:
    img = Image.from_array(_grey())
    back = read_image(write_image(img, tmp_path / "g.png"))
    assert back.array.shape == (1, 12, 10) and back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, img.array)
    assert back.spacing == (1.0, 1.0) and back.origin == (0.0, 0.0)


def test_png_rgb_round_trip_and_axis_order(tmp_path: Path) -> None:
    rgb = np.zeros((3, 4, 6), np.uint8)
    rgb[0, 1, 5] = 255  # red at row 1, column 5
    back = read_image(write_image(Image.from_array(rgb), tmp_path / "c.png"))
    np.testing.assert_array_equal(back.array, rgb)
    with PILImage.open(tmp_path / "c.png") as pic:
        assert pic.size == (6, 4) and pic.getpixel((5, 1)) == (255, 0, 0)


def test_label_map_kept_exact(tmp_path: Path) -> None:
    lab = np.zeros((1, 8, 8), np.int64)
    lab[0, 2:4, 2:5] = 3
    back = read_image(write_image(Image.from_array(lab), tmp_path / "lab.png"))
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, lab)
    mask = lab.astype(bool)
    np.testing.assert_array_equal(
        read_image(write_image(Image.from_array(mask), tmp_path / "m.png")).array, mask
    )


def test_uint16_png_and_float_tiff_exact(tmp_path: Path) -> None:
    arr16 = (np.arange(20).reshape(1, 4, 5) * 3000).astype(np.uint16)
    back = read_image(write_image(Image.from_array(arr16), tmp_path / "x.png"))
    np.testing.assert_array_equal(back.array, arr16)
    arrf = np.linspace(-1, 1, 20, dtype=np.float32).reshape(1, 4, 5)
    backf = read_image(write_image(Image.from_array(arrf), tmp_path / "f.tif"))
    assert backf.array.dtype == np.float32
    np.testing.assert_array_equal(backf.array, arrf)


def test_float_png_scaled_with_range_in_meta(tmp_path: Path) -> None:
    arr = np.linspace(-100.0, 300.0, 30).reshape(1, 5, 6)
    back = read_image(write_image(Image.from_array(arr), tmp_path / "s.png"))
    assert back.array.min() == 0 and back.array.max() == 255
    assert back.meta["intensity_range"] == (-100.0, 300.0)
    lo, hi = back.meta["intensity_range"]
    np.testing.assert_allclose(back.array / 255.0 * (hi - lo) + lo, arr, atol=(hi - lo) / 255)
    with pytest.raises(DataError, match="NaN"):
        write_image(Image.from_array(np.full((1, 2, 2), np.nan)), tmp_path / "nan.png")


def test_modes_rgba_palette_gif_jpeg(tmp_path: Path) -> None:
    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[..., 1] = 200
    rgba[..., 3] = 10
    PILImage.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    back = read_image(tmp_path / "a.png")
    assert back.array.shape == (3, 5, 7) and int(back.array[1].max()) == 200
    pal = PILImage.fromarray(rgba[..., :3], "RGB").convert("P")
    pal.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").array.shape == (3, 5, 7)
    grey = Image.from_array(np.where(_grey() > 100, 255, 0).astype(np.uint8))
    gif = read_image(write_image(grey, tmp_path / "g.gif"))
    np.testing.assert_array_equal(gif.array, grey.array)
    jpg = read_image(write_image(grey, tmp_path / "g.jpg"))
    assert jpg.array.shape == (1, 12, 10) and np.abs(jpg.array.astype(int) - grey.array).mean() < 20


def test_picture_writer_rejects_3d_and_bad_channels(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="2D"):
        write_image(Image.from_array(np.zeros((1, 2, 2, 2), np.uint8)), tmp_path / "v.png")
    with pytest.raises(DataError, match="channels"):
        write_image(Image.from_array(np.zeros((2, 4, 4), np.uint8)), tmp_path / "two.png")


def test_corrupt_picture_and_unknown_suffix(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 5)
    with pytest.raises(DataError, match="broken.png"):
        read_image(bad)
    noise = np.random.default_rng(0).integers(0, 256, (1, 32, 32), dtype=np.uint8)
    good = write_image(Image.from_array(noise), tmp_path / "ok.png").read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="cut.png"):
        read_image(cut)
    odd = tmp_path / "x.xyz"
    odd.write_bytes(b"123")
    with pytest.raises(DataError, match="supported: nifti"):
        read_image(odd)
    with pytest.raises(DataError, match="not found"):
        read_image(tmp_path / "missing.png")


def test_real_pictures(data_root: Path) -> None:
    drive = data_root / "drive"
    fundus = read_image(next(iter(sorted(drive.rglob("*.tif")))))
    assert fundus.array.shape == (3, 584, 565) and fundus.array.dtype == np.uint8
    mask = read_image(next(iter(sorted(drive.rglob("*.gif")))))
    assert mask.array.shape == (1, 584, 565)
    assert set(np.unique(mask.array)) <= {0, 255}
    jpg = read_image(next(iter(sorted((data_root / "isic2018").rglob("*.jpg")))))
    assert jpg.channels == 3 and jpg.ndim == 2
