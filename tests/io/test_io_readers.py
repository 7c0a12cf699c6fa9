"""Dispatch by suffix, forced readers, helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medsight.errors import DataError
from medsight.io import Image, read_image, write_image
from medsight.io.readers import detect_format, has_nonfinite, smallest_int_dtype


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.nii.gz", "nifti"), ("a.NII", "nifti"), ("b.nrrd", "itk"), ("c.mha", "itk"), ("d.PNG", "picture"),
     ("e.tiff", "picture"), ("f.npz", "numpy"), ("g.dcm", "dicom"), ("x.case.001.nii.gz", "nifti")],
)  # fmt: skip
def test_detect_format(name: str, fmt: str) -> None:
    assert detect_format(name) == fmt


def test_unknown_suffix_and_reader(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"unknown image format '\.xyz'; supported: nifti \(\.nii \.nii\.gz\)"
    ):
        detect_format(tmp_path / "a.xyz")
    img = write_image(Image.from_array(np.zeros((1, 2, 2), np.uint8)), tmp_path / "a.png")
    with pytest.raises(DataError, match="did you mean 'nifti'"):
        read_image(img, reader="nifty")
    with pytest.raises(DataError, match="cannot be written"):
        write_image(Image.from_array(np.zeros((1, 2, 2), np.uint8)), tmp_path / "a.dcm")


def test_forced_reader_and_dicom_sniffing(tmp_path: Path) -> None:
    out = write_image(Image.from_array(np.ones((1, 2, 3, 4), np.float32)), tmp_path / "vol.nii")
    renamed = out.rename(tmp_path / "vol.data")
    assert read_image(renamed, reader="nifti").shape == (2, 3, 4)
    with pytest.raises(DataError, match="unknown image format"):
        read_image(renamed)


def test_dicom_without_suffix_detected(data_root: Path) -> None:
    folder = data_root / "totalseg-examples" / "example_ct_dicom"
    first = sorted(p for p in folder.iterdir() if p.is_file())[0]
    assert detect_format(first) == "dicom"  # no .dcm suffix: found by the DICM preamble
    img = read_image(first)
    assert img.meta["format"] == "dicom" and img.shape == (512, 512)


def test_has_nonfinite_and_int_dtype() -> None:
    assert has_nonfinite(np.array([1.0, np.nan]))
    assert has_nonfinite(Image.from_array(np.array([[[np.inf]]])))
    assert not has_nonfinite(np.array([1, 2]))
    assert smallest_int_dtype(np.array([0, 255])) == np.uint8
    assert smallest_int_dtype(np.array([-1, 255])) == np.int16
    assert smallest_int_dtype(np.array([0, 40000])) == np.int32
    assert smallest_int_dtype(np.array([True])) == np.uint8


def test_write_is_atomic_on_failure(tmp_path: Path) -> None:
    target = write_image(Image.from_array(np.ones((1, 2, 2, 2), np.float32)), tmp_path / "keep.nii.gz")
    before = target.read_bytes()
    with pytest.raises(DataError):
        write_image(Image.from_array(np.ones((1, 2, 2, 2), np.complex64)), target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.nii.gz"]
