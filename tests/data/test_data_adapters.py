"""The registered adapters on the real data in ../shared/data (skipped where it is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medsight.data import DATASETS, load_dataset, read_case, read_case_image, validate_dataset
from medsight.data.adapters import totalseg_class_table
from medsight.errors import DataError

pytestmark = pytest.mark.realdata


def test_registry_lists_every_dataset_with_a_description() -> None:
    by_targets: dict[str, set[str]] = {}
    for name in DATASETS:
        by_targets.setdefault(DATASETS.get(name).targets, set()).add(name)
    assert by_targets["label maps"] == {"brats", "drive", "isbi2012", "isic2018", "totalseg"}
    assert {"isic2018-attributes", "breastmnist", "pneumoniamnist", "organmnist3d"} <= by_targets["classes"]
    assert all(10 < len(DATASETS.get(n).description) <= 110 for n in DATASETS)


def test_every_listed_name_loads_with_the_loader_of_its_targets(data_root: Path) -> None:
    from medsight.data.classification import load_classification

    assert len(load_classification("breastmnist", data_root=data_root).train) == 546
    assert load_classification("isic2018-attributes", data_root=data_root).problem == "multilabel"
    with pytest.raises(DataError, match="holds classes, not label maps"):
        load_dataset("breastmnist", data_root=data_root)
    with pytest.raises(DataError, match="registered name"):
        load_classification("drive", data_root=data_root)


def test_missing_data_root_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"dataset 'drive': folder .*drive not found"):
        load_dataset("drive", data_root=tmp_path)


def test_isbi2012_membrane_is_the_black_pixels(data_root: Path) -> None:
    spec = load_dataset("isbi2012", data_root=data_root)
    assert (len(spec.train), len(spec.test)) == (30, 30) and spec.test[0].label is None
    assert spec.labels == {"background": 0, "membrane": 1} and spec.channel_names == {0: "EM"}
    case = read_case(spec, spec.train[0])
    assert case.image.array.shape == (1, 512, 512)
    frac = case.label.array.mean()
    assert 0.1 < frac < 0.35  # membranes are the thin minority (~22%), not the cell interiors
    em = case.image.array[0].astype(float)
    assert (
        em[case.label.array[0] == 1].mean() < em[case.label.array[0] == 0].mean()
    )  # membranes are dark in EM


def test_drive(data_root: Path) -> None:
    spec = load_dataset("drive", data_root=data_root)
    assert (len(spec.train), len(spec.test)) == (20, 20)
    assert spec.train[0].case_id == "drive_21" and spec.test[0].case_id == "drive_01"
    assert all("second_manual" in c.extra for c in spec.test) and not spec.train[0].extra
    case = read_case(spec, spec.train[0])
    assert case.image.array.shape == (3, 584, 565) and case.image.array.dtype == np.uint8
    assert set(np.unique(case.label.array)) == {0, 1} and 0.05 < case.label.array.mean() < 0.2
    outside = (case.label.array.astype(bool) & ~case.roi.array).sum()
    assert (
        case.roi.array.dtype == bool and outside < 0.003 * case.label.array.sum()
    )  # a few traced pixels overhang


def test_isic2018(data_root: Path) -> None:
    spec = load_dataset("isic2018", data_root=data_root)
    assert (len(spec.train), len(spec.test)) == (1600, 400)
    case = spec.train[0]
    assert case.case_id == "ISIC_0000000" and case.extra["attributes"]["pigment_network"] == 1
    data = read_case(spec, case)
    assert data.image.array.shape == (3, 256, 256) and set(np.unique(data.label.array)) == {0, 1}


def test_brats(data_root: Path) -> None:
    spec = load_dataset("brats", data_root=data_root)
    assert [c.case_id for c in spec.train] == ["OtherEXampleFromTCIA", "TCGA-DU-7294"]
    assert [c.case_id for c in spec.test] == ["BraTS-GLI-00001-000"] and spec.test[0].label is None
    assert spec.channel_names == {0: "T1", 1: "T1c", 2: "T2", 3: "FLAIR"}
    assert spec.regions["whole_tumour"] == [1, 2, 3] and "not manual" in spec.label_note
    case = read_case(spec, spec.train[0])
    assert case.image.array.shape == (4, 240, 240, 155) and case.image.spacing == (1.0, 1.0, 1.0)
    assert set(np.unique(case.label.array)) == {0, 1, 2, 3}  # stored 4 (enhancing) reads as 3
    assert read_case_image(spec.test[0]).array.shape == (4, 240, 240, 155)  # BraTS 2023 names: t1n, t2w, t2f


def test_totalseg_keeps_four_organs(data_root: Path) -> None:
    spec = load_dataset("totalseg", data_root=data_root)
    table = totalseg_class_table(spec.train[0].label)
    assert {table[1], table[2], table[3], table[5]} == {"spleen", "kidney_right", "kidney_left", "liver"}
    assert spec.labels == {"background": 0, "spleen": 1, "kidney_right": 2, "kidney_left": 3, "liver": 4}
    case = read_case(spec, spec.train[0])
    assert case.image.array.shape == (1, 122, 101, 112) and case.image.spacing == (3.0, 3.0, 3.0)
    lab, ct = case.label.array[0], case.image.array[0]
    assert set(np.unique(lab)) == {0, 1, 2, 3, 4}
    assert 20 < np.median(ct[lab == 4]) < 90  # liver soft tissue in HU
    assert (lab == 4).sum() > 3 * (lab == 1).sum()  # the liver is far larger than the spleen
    assert case.image.direction[0, 0] == -1.0  # i runs towards the patient's right (L in LPS decreases)
    i_of = {v: np.argwhere(lab == v)[:, 0].mean() for v in (1, 2, 3, 4)}
    assert min(i_of[4], i_of[2]) > max(
        i_of[1], i_of[3]
    )  # liver and right kidney on the right, spleen on the left
    assert validate_dataset(spec) == []
