"""DICOM: the real CT series against SimpleITK, compressed syntaxes, series selection, bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medsight.errors import DataError
from medsight.io import read_image, write_image
from medsight.io.dicom import list_dicom_series, read_dicom_series


@pytest.fixture(scope="module")
def ct_folder(data_root: Path) -> Path:
    folder = data_root / "totalseg-examples" / "example_ct_dicom"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    return folder


@pytest.fixture(scope="module")
def pydicom_dir(data_root: Path) -> Path:
    return data_root / "dicom" / "pydicom"


def _sitk_series(folder: Path):
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def test_ct_series_matches_simpleitk(ct_folder: Path) -> None:
    import SimpleITK as sitk

    img = read_image(ct_folder)
    ref = _sitk_series(ct_folder)
    assert img.array.shape == (1, 512, 512, 20)
    np.testing.assert_array_equal(img.array[0], np.transpose(sitk.GetArrayFromImage(ref), (2, 1, 0)))
    np.testing.assert_allclose(img.spacing, ref.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(img.origin, ref.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(img.direction.ravel(), ref.GetDirection(), atol=1e-6)
    assert img.meta["Modality"] == "CT" and len(img.meta["SOPInstanceUIDs"]) == 20
    assert not any("Patient" in key for key in img.meta)
    assert img.array.min() < -900  # RescaleIntercept applied: air is about -1000 HU


def test_dicom_aligns_with_its_segmentation_nifti(ct_folder: Path) -> None:
    """TotalSegmentator's NIfTI of this series is stored j-flipped; both map to the same LPS points."""
    ct = read_image(ct_folder)
    seg = read_image(ct_folder.parent / "example_seg_dicom.nii.gz")
    seg_to_ct = np.linalg.inv(ct.affine) @ seg.affine  # seg index -> ct index
    np.testing.assert_allclose(seg_to_ct[:3, :3], np.diag([1.0, -1.0, 1.0]), atol=1e-4)
    np.testing.assert_allclose(seg_to_ct[:3, 3], [0.0, ct.shape[1] - 1, 0.0], atol=1e-3)
    labelled = seg.array[0][:, ::-1, :] > 0
    assert (ct.array[0][labelled] > -200).mean() > 0.9  # organs are tissue, not air: axes line up
    assert (ct.array[0][seg.array[0] > 0] > -200).mean() < 0.85  # ignoring the flip would not


def test_nifti_from_dicom_keeps_geometry(ct_folder: Path, tmp_path: Path) -> None:
    import SimpleITK as sitk

    ref = _sitk_series(ct_folder)
    out = write_image(read_image(ct_folder), tmp_path / "ct.nii.gz")
    back = sitk.ReadImage(str(out))
    np.testing.assert_allclose(back.GetSpacing(), ref.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(back.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(back.GetDirection(), ref.GetDirection(), atol=1e-6)
    lps = np.eye(4)
    lps[:3, :3] = np.reshape(ref.GetDirection(), (3, 3)) @ np.diag(ref.GetSpacing())
    lps[:3, 3] = ref.GetOrigin()
    np.testing.assert_allclose(nib.load(str(out)).affine, np.diag([-1, -1, 1, 1]) @ lps, atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(ref))


def test_shuffled_file_list_is_sorted_by_position(ct_folder: Path) -> None:
    files = sorted(p for p in ct_folder.iterdir() if p.is_file())[:6]
    rng = np.random.default_rng(1)
    shuffled = [files[i] for i in rng.permutation(len(files))]
    img = read_image(shuffled)
    z = [float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files]
    assert img.array.shape[-1] == 6
    assert img.origin[2] == pytest.approx(min(z))
    assert img.spacing[2] == pytest.approx((max(z) - min(z)) / 5)


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
    ],
)
def test_lossless_syntaxes_equal_uncompressed(pydicom_dir: Path, name: str) -> None:
    ref = read_image(pydicom_dir / "MR_small.dcm")
    img = read_image(pydicom_dir / name)
    assert img.array.shape == (1, 64, 64) and img.array.dtype == ref.array.dtype
    np.testing.assert_array_equal(img.array, ref.array)
    assert img.spacing == ref.spacing


def test_single_file_is_row_column_2d(pydicom_dir: Path) -> None:
    ds = pydicom.dcmread(pydicom_dir / "CT_small.dcm")
    img = read_image(pydicom_dir / "CT_small.dcm")
    expected = ds.pixel_array.astype(np.int64) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    assert img.ndim == 2
    np.testing.assert_array_equal(img.array[0], expected)
    assert img.spacing == tuple(float(x) for x in ds.PixelSpacing)
    assert img.meta["ImagePositionPatient"] == [float(x) for x in ds.ImagePositionPatient]


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("JPGExtended.dcm", (1, 1024, 256)),
        ("693_J2KI.dcm", (1, 512, 512)),
        ("JPEGLSNearLossless_16.dcm", (1, 50, 10)),
        ("SC_rgb_jpeg_gdcm.dcm", (3, 100, 100)),
        ("examples_palette.dcm", (3, 350, 800)),
        ("SC_rgb_rle_2frame.dcm", (3, 100, 100, 2)),
    ],
)
def test_compressed_and_colour_files(pydicom_dir: Path, name: str, shape: tuple[int, ...]) -> None:
    img = read_image(pydicom_dir / name)
    assert img.array.shape == shape
    assert img.array.std() > 0


def test_ybr_jpeg_converted_to_rgb(pydicom_dir: Path) -> None:
    rgb = read_image(pydicom_dir / "SC_rgb_dcmtk_+eb+cr.dcm").array.astype(float)
    ybr = read_image(pydicom_dir / "SC_rgb_dcmtk_+eb+cy+n1.dcm").array.astype(float)
    assert np.abs(rgb - ybr).mean() < 5.0  # same picture; YBR decoded to RGB, not left as YCbCr


def test_multiframe_dose_matches_simpleitk(pydicom_dir: Path) -> None:
    import SimpleITK as sitk

    img = read_image(pydicom_dir / "rtdose.dcm")
    ref = sitk.ReadImage(str(pydicom_dir / "rtdose.dcm"))
    scaling = float(pydicom.dcmread(pydicom_dir / "rtdose.dcm", stop_before_pixels=True).DoseGridScaling)
    np.testing.assert_allclose(img.array[0], np.transpose(sitk.GetArrayFromImage(ref), (2, 1, 0)) * scaling)
    np.testing.assert_allclose(img.spacing, ref.GetSpacing())
    np.testing.assert_allclose(img.origin, ref.GetOrigin(), atol=1e-4)


def test_truncated_and_non_image_files(pydicom_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="rtplan_truncated.dcm"):
        read_image(pydicom_dir / "rtplan_truncated.dcm")
    raw = (pydicom_dir / "CT_small.dcm").read_bytes()
    cut = tmp_path / "cut_ct.dcm"
    cut.write_bytes(raw[: len(raw) - 5000])
    with pytest.raises(DataError, match=r"cut_ct.dcm: cannot decode pixel data.*less than expected"):
        read_image(cut)
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"not dicom at all " * 20)
    with pytest.raises(DataError, match="garbage.dcm"):
        read_image(garbage)


def test_several_series_told_apart(data_root: Path, tmp_path: Path) -> None:
    ct = sorted((data_root / "monai-testing" / "CT_DICOM").iterdir())
    mr = sorted((data_root / "dicom" / "nibabel").glob("*.dcm"))
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    for f in ct:
        shutil.copy(f, folder / f"ct_{f.name}")
    for f in mr:
        shutil.copy(f, folder / "sub" / f"mr_{f.name}")
    (folder / "notes.txt").write_text("not a DICOM file")
    series = list_dicom_series(folder)
    assert sorted(len(v) for v in series.values()) == [len(mr), len(ct)]
    with pytest.raises(DataError, match="2 DICOM series found"):
        read_image(folder)
    mr_uid = str(pydicom.dcmread(mr[0], stop_before_pixels=True).SeriesInstanceUID)
    mr_img = read_image(folder, series_uid=mr_uid)
    assert mr_img.array.shape == (1, 256, 256, len(mr)) and mr_img.meta["Modality"] == "MR"
    with (
        pytest.warns(UserWarning, match="reading the largest"),
        pytest.warns(UserWarning, match="not uniform"),
    ):
        ct_img = read_dicom_series(folder, pick_largest=True)
    assert ct_img.meta["Modality"] == "CT" and ct_img.array.shape[-1] == len(ct)
    assert ct_img.meta["nonuniform_slice_spacing"]  # this small CT skips slices
    with pytest.raises(DataError, match="not found; series present"):
        read_image(folder, series_uid="1.2.3")


def test_folder_without_dicom(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(DataError, match="no DICOM image files"):
        read_image(tmp_path)
