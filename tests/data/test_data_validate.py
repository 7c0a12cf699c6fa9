"""Validation finds every kind of problem and names the case and the field."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from data_testutils import write_nii

from medsight.data import DataIssue, load_dataset, raise_on_issues, validate_dataset
from medsight.errors import DataError


def _issues(root: Path) -> list[str]:
    return [str(i) for i in validate_dataset(load_dataset(root), max_workers=2)]


def test_clean_dataset_has_no_issues(make_msd) -> None:
    assert _issues(make_msd()) == []


def test_label_shape_mismatch(make_msd) -> None:
    root = make_msd()
    write_nii(root / "labelsTr" / "case_001.nii.gz", np.zeros((8, 8, 5), np.uint8))
    assert _issues(root) == ["case_001 label: shape (8, 8, 5) does not match image (8, 8, 6)"]


def test_label_spacing_and_origin_mismatch(make_msd) -> None:
    root = make_msd()
    lab = np.zeros((8, 8, 6), np.uint8)
    write_nii(root / "labelsTr" / "case_000.nii.gz", lab, spacing=(1.0, 1.0, 2.5))
    write_nii(root / "labelsTr" / "case_002.nii.gz", lab, origin=(0.0, 5.0, 0.0))
    assert _issues(root) == [
        "case_000 label: spacing (1, 1, 2.5) does not match image (1, 1, 1)",
        "case_002 label: origin (0, 5, 0) does not match image (0, 0, 0)",
    ]


def test_undeclared_label_value(make_msd) -> None:
    root = make_msd()
    lab = np.zeros((8, 8, 6), np.uint8)
    lab[0, 0, 0] = 7
    write_nii(root / "labelsTr" / "case_001.nii.gz", lab)
    assert _issues(root) == ["case_001 label: values [7] are not declared in labels (declared: [0, 1])"]


def test_nan_and_constant_images(make_msd) -> None:
    root = make_msd()
    img = np.ones((8, 8, 6), np.float32)
    write_nii(root / "imagesTr" / "case_000_0000.nii.gz", img)
    img[1, 2, 3] = np.nan
    img[0, 0, 0] = np.inf
    write_nii(root / "imagesTr" / "case_002_0000.nii.gz", img)
    assert _issues(root) == [
        "case_000 image: image is empty: every value is 1.0",
        "case_002 image: 2 NaN/Inf value(s) out of 384",
    ]


def test_truncated_and_missing_files(make_msd) -> None:
    root = make_msd()
    path = root / "imagesTr" / "case_001_0000.nii.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    (root / "labelsTr" / "case_002.nii.gz").unlink()
    issues = validate_dataset(load_dataset(root))
    assert [(i.case_id, i.field) for i in issues] == [("case_001", "image"), ("case_002", "label")]
    assert "case_001_0000.nii.gz: cannot read NIfTI" in issues[0].message
    assert "case_002.nii.gz: file not found" in issues[1].message


def test_garbage_gzip_is_unreadable(make_msd) -> None:
    root = make_msd()
    (root / "labelsTr" / "case_000.nii.gz").write_bytes(gzip.compress(b"not a nifti header"))
    (issue,) = validate_dataset(load_dataset(root))
    assert (issue.case_id, issue.field) == ("case_000", "label") and "cannot read NIfTI" in issue.message


def test_channel_files_disagree(make_msd) -> None:
    root = make_msd(channels=2)
    write_nii(root / "imagesTr" / "case_001_0001.nii.gz", np.ones((8, 7, 6), np.float32))
    assert _issues(root) == ["case_001 image_0001: shape (8, 7, 6) does not match image_0000 (8, 8, 6)"]
    (root / "imagesTr" / "case_002_0001.nii.gz").unlink()
    assert "case_002 image_0001: " in _issues(root)[1] and "file not found" in _issues(root)[1]


def test_mixed_dimensionality(make_msd) -> None:
    root = make_msd()
    write_nii(root / "imagesTr" / "case_002_0000.nii.gz", np.random.default_rng(0).normal(size=(8, 8)))
    write_nii(root / "labelsTr" / "case_002.nii.gz", np.zeros((8, 8), np.uint8))
    assert _issues(root) == ["case_002 image: 2D image in a dataset of 3D images (2 of 3 cases are 3D)"]


def test_non_integer_label(make_msd) -> None:
    root = make_msd()
    write_nii(root / "labelsTr" / "case_000.nii.gz", np.full((8, 8, 6), 0.5, np.float32))
    (issue,) = validate_dataset(load_dataset(root))
    assert issue.field == "label" and "non-integer values" in issue.message


def test_raise_on_issues_lists_them_all() -> None:
    raise_on_issues([])
    issues = [
        DataIssue("case_003", "label", "shape (64, 64, 30) does not match image (64, 64, 31)"),
        DataIssue("case_007", "image", "2 NaN/Inf value(s) out of 10"),
    ]
    with pytest.raises(DataError) as err:
        raise_on_issues(issues)
    lines = str(err.value).splitlines()
    assert lines[0] == "2 data issue(s) found:"
    assert lines[1].strip() == "case_003 label: shape (64, 64, 30) does not match image (64, 64, 31)"
    assert lines[2].strip().startswith("case_007 image:")
