"""NIfTI: round trips with an oblique affine, label dtypes, 4D channels, corrupt files."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medsight.errors import DataError
from medsight.io import Image, read_image, write_image
from medsight.io.nifti import affine_ras


def _oblique_direction() -> np.ndarray:
    a, b = np.deg2rad(20.0), np.deg2rad(-35.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def _volume(dtype: type = np.float32, channels: int = 1) -> Image:
    rng = np.random.default_rng(0)
    arr = rng.normal(size=(channels, 5, 6, 7)).astype(dtype)
    return Image(arr, spacing=(0.7, 1.3, 2.5), origin=(-12.5, 40.0, 7.25), direction=_oblique_direction())


def test_nifti_round_trip_oblique(tmp_path: Path) -> None:
    img = _volume()
    out = write_image(img, tmp_path / "img.nii.gz")
    back = read_image(out)
    assert back.array.dtype == np.float32
    assert back.array.shape == (1, 5, 6, 7)
    np.testing.assert_allclose(back.array, img.array, atol=1e-6)
    np.testing.assert_allclose(back.spacing, img.spacing, atol=1e-4)
    np.testing.assert_allclose(back.origin, img.origin, atol=1e-4)
    np.testing.assert_allclose(back.direction, img.direction, atol=1e-4)
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-4)


def test_nifti_affine_is_ras_on_disk(tmp_path: Path) -> None:
    """LPS (-x, -y) in medsight is RAS (+x, +y) in the file: check against nibabel directly."""
    img = Image(np.zeros((1, 2, 3, 4), np.float32), (1.0, 2.0, 3.0), (10.0, 20.0, 30.0), np.eye(3))
    write_image(img, tmp_path / "a.nii")
    aff = nib.load(str(tmp_path / "a.nii")).affine
    expected = np.array([[-1, 0, 0, -10], [0, -2, 0, -20], [0, 0, 3, 30], [0, 0, 0, 1.0]])
    np.testing.assert_allclose(aff, expected)
    np.testing.assert_allclose(affine_ras(img), expected)


@pytest.mark.parametrize(
    ("values", "dtype"),
    [((0, 1, 2, 117), np.uint8), ((0, 300, -5), np.int16), ((0, 70000), np.int32)],
)
def test_nifti_label_dtype_kept(tmp_path: Path, values: tuple[int, ...], dtype: type) -> None:
    arr = np.zeros((1, 5, 6, 7), np.int64)
    arr.flat[: len(values)] = values
    img = _volume().with_array(arr)
    back = read_image(write_image(img, tmp_path / "lab.nii.gz"))
    assert back.array.dtype == dtype
    np.testing.assert_array_equal(back.array, arr)


def test_nifti_bool_mask_written_as_uint8(tmp_path: Path) -> None:
    mask = np.zeros((1, 3, 3, 3), bool)
    mask[0, 1, 1, 1] = True
    back = read_image(write_image(Image.from_array(mask), tmp_path / "m.nii.gz"))
    assert back.array.dtype == np.uint8 and back.array.sum() == 1


def test_nifti_multichannel_3d_and_2d(tmp_path: Path) -> None:
    img = _volume(channels=3)
    back = read_image(write_image(img, tmp_path / "four_d.nii.gz"))
    assert back.array.shape == (3, 5, 6, 7)
    np.testing.assert_allclose(back.array, img.array)
    flat = Image(np.arange(24, dtype=np.float32).reshape(2, 3, 4), (0.5, 0.25), (1.0, 2.0), np.eye(2))
    back2 = read_image(write_image(flat, tmp_path / "flat.nii.gz"))
    assert back2.array.shape == (2, 3, 4) and back2.ndim == 2
    np.testing.assert_allclose(back2.array, flat.array)
    np.testing.assert_allclose(back2.spacing, (0.5, 0.25))
    np.testing.assert_allclose(back2.origin, (1.0, 2.0))


def test_nifti_keeps_header_codes_and_like(tmp_path: Path) -> None:
    img = _volume()
    img.meta.update(sform_code=2, qform_code=0)
    out = write_image(img, tmp_path / "codes.nii.gz")
    hdr = nib.load(str(out)).header
    assert int(hdr["sform_code"]) == 2
    ref = read_image(out)
    pred = Image.from_array(np.ones((1, 5, 6, 7), np.uint8))
    back = read_image(write_image(pred, tmp_path / "pred.nii.gz", like=ref))
    assert back.same_geometry(ref)
    with pytest.raises(DataError, match="does not match the reference"):
        write_image(Image.from_array(np.ones((1, 2, 2, 2), np.uint8)), tmp_path / "bad.nii.gz", like=ref)


def test_nifti_corrupt_and_truncated(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.nii.gz"
    bad.write_bytes(b"this is not gzip at all" * 10)
    with pytest.raises(DataError, match="corrupt.nii.gz"):
        read_image(bad)
    good = write_image(_volume(), tmp_path / "good.nii.gz")
    raw = gzip.decompress(good.read_bytes())
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(DataError, match="cut.nii.gz"):
        read_image(cut)
    empty = tmp_path / "empty.nii"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        read_image(empty)


def test_nifti_real_ct_matches_simpleitk(data_root: Path) -> None:
    import SimpleITK as sitk

    path = data_root / "totalseg-examples" / "example_ct.nii.gz"
    img = read_image(path)
    ref = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(img.array[0], np.transpose(sitk.GetArrayFromImage(ref), (2, 1, 0)))
    np.testing.assert_allclose(img.spacing, ref.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(img.origin, ref.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(img.direction.ravel(), ref.GetDirection(), atol=1e-4)
