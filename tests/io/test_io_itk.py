"""NRRD and MetaImage through SimpleITK: round trips with oblique geometry, axis order, real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medsight.errors import DataError
from medsight.io import Image, read_image, write_image


def _image(dtype: type = np.float32, channels: int = 1) -> Image:
    a = np.deg2rad(30.0)
    direction = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    arr = np.random.default_rng(0).normal(size=(channels, 4, 5, 6)) * 100
    return Image(arr.astype(dtype), (0.8, 1.1, 3.0), (5.0, -7.5, 120.0), direction)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd", ".nhdr"])
def test_itk_round_trip(tmp_path: Path, suffix: str) -> None:
    img = _image()
    out = write_image(img, tmp_path / f"img{suffix}")
    back = read_image(out)
    np.testing.assert_array_equal(back.array, img.array)
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-6)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_itk_axis_order_matches_simpleitk(tmp_path: Path) -> None:
    arr = np.zeros((1, 4, 5, 6), np.int16)
    arr[0, 3, 1, 2] = 7  # i=3, j=1, k=2
    out = write_image(Image.from_array(arr), tmp_path / "one.nrrd")
    ref = sitk.ReadImage(str(out))
    assert ref.GetSize() == (4, 5, 6)
    assert ref.GetPixel(3, 1, 2) == 7
    assert read_image(out).array.dtype == np.uint8  # label map in the smallest integer type


def test_itk_vector_and_2d(tmp_path: Path) -> None:
    img = _image(channels=3)
    back = read_image(write_image(img, tmp_path / "vec.mha"))
    assert back.array.shape == (3, 4, 5, 6)
    np.testing.assert_array_equal(back.array, img.array)
    flat = Image(np.arange(12, dtype=np.int16).reshape(1, 3, 4), (0.5, 2.0), (1.0, -1.0), np.eye(2))
    back2 = read_image(write_image(flat, tmp_path / "flat.nrrd"))
    np.testing.assert_array_equal(back2.array, flat.array)
    assert back2.spacing == (0.5, 2.0)
    assert sitk.ReadImage(str(tmp_path / "flat.nrrd")).GetSize() == (3, 4)


def test_itk_corrupt(tmp_path: Path) -> None:
    bad = tmp_path / "bad.nrrd"
    bad.write_text("NRRD0004\ntype: float\ndimension: 3\nsizes: 10 10 10\nencoding: raw\n\nshort")
    with pytest.raises(DataError, match="bad.nrrd"):
        read_image(bad)


def test_real_mha(data_root: Path) -> None:
    path = data_root / "monai-testing" / "CT_2D_head_fixed.mha"
    img = read_image(path)
    ref = sitk.ReadImage(str(path))
    assert img.ndim == 2 and img.shape == ref.GetSize()
    np.testing.assert_array_equal(img.array[0], sitk.GetArrayFromImage(ref).T)
