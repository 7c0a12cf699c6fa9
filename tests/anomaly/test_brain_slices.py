"""``brats-slices`` on a synthetic BraTS-like folder: axial slices, healthy vs tumour classes, masks,
scaling to 8 bits and the subject splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medsight.data.brain_slices import MIN_TUMOUR, SUBJECTS, load_brain_slices
from medsight.data.classification import load_classification
from medsight.errors import DataError
from medsight.io import Image, write_image


def _subject(root: Path, name: str, tumour_slices: range) -> None:
    rng = np.random.default_rng(len(name))
    flair = np.zeros((1, 24, 24, 12), np.float32)
    flair[0, 4:20, 4:20, 1:11] = rng.uniform(100, 400, (16, 16, 10))  # slices 0 and 11: no brain
    seg = np.zeros((1, 24, 24, 12), np.uint8)
    for z in tumour_slices:
        seg[0, 8:14, 8:14, z] = 2
    seg[0, 5, 5, 3] = 1  # a single tumour voxel: slice 3 is neither healthy nor tumour
    folder = root / name
    folder.mkdir(parents=True)
    write_image(Image.from_array(flair), folder / f"{name}_fla.nii.gz")
    write_image(Image.from_array(seg), folder / "seg_fusion_simple.nii.gz")


def test_slices_classes_masks_and_splits(tmp_path: Path) -> None:
    _subject(tmp_path, SUBJECTS[0], range(5, 8))
    _subject(tmp_path, SUBJECTS[1], range(6, 9))
    data = load_brain_slices(tmp_path)
    assert data.class_names == ["healthy", "tumour"] and MIN_TUMOUR > 1
    ids = {c.case_id for split in data.splits.values() for c in split}
    assert len(ids) == 2 * 9  # 10 brain slices each, slice 3 left out
    assert all(c.classes == 0 for c in data.train)
    assert {c.patient_id for c in data.splits["test"]} == {SUBJECTS[1]}
    tumours = [c for c in data.splits["test"] if c.classes == 1]
    assert len(tumours) == 3 and all(c.extra["mask"].sum() == 36 for c in tumours)
    assert all(c.array.dtype == np.uint8 and c.array.shape == (1, 24, 24) for c in data.train)
    assert max(int(c.array.max()) for c in data.train) == 255


def test_missing_subject_or_label_is_a_data_error(tmp_path: Path) -> None:
    _subject(tmp_path, SUBJECTS[0], range(5, 8))
    with pytest.raises(DataError, match="subject folder OtherEXampleFromTCIA not found"):
        load_brain_slices(tmp_path)
    (tmp_path / SUBJECTS[0] / "seg_fusion_simple.nii.gz").unlink()
    with pytest.raises(DataError, match="tumour label not found"):
        load_brain_slices(tmp_path)


def test_registered_name_is_known_to_the_classification_loader() -> None:
    from medsight.data.adapters import DATASETS

    assert DATASETS.get("brats-slices").targets == "classes"
    with pytest.raises(DataError, match="brats-slices"):
        load_classification("brats-slice")  # did you mean
