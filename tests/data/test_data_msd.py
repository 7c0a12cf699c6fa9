"""Loading MSD / nnU-Net v2 folders and the dispatch of load_dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data_testutils import write_nii

from medsight.data import load_dataset, read_case, read_label
from medsight.errors import DataError
from medsight.io import Image, write_image


def test_fundus_phantom_folder_loads(fundus_root: Path) -> None:
    spec = load_dataset(fundus_root)
    assert (len(spec.train), len(spec.test)) == (4, 2)
    assert spec.channel_names == {0: "R", 1: "G", 2: "B"}
    assert spec.labels == {"background": 0, "vessel": 1}
    assert spec.file_ending == ".png" and spec.label_map is None
    case = spec.train[0]
    assert len(case.images) == 1 and case.images[0].name == "fundus2d_000_0000.png"
    assert case.roi is not None and spec.test[0].label is not None
    data = read_case(spec, case)
    assert data.image.array.shape == (3, 64, 64) and data.image.array.dtype == np.uint8
    assert set(np.unique(data.label.array)) == {0, 1}
    assert data.roi is not None and data.roi.array.dtype == bool
    assert not (data.label.array.astype(bool) & ~data.roi.array).any()  # vessels lie inside the field of view


def test_brain_phantom_folder_loads_channels_and_regions(brain_root: Path) -> None:
    spec = load_dataset(str(brain_root))
    assert spec.num_channels == 4 and spec.channel_names[3] == "FLAIR"
    assert spec.regions == {"whole_tumour": [1, 2, 3], "tumour_core": [1, 3], "enhancing_tumour": [3]}
    case = spec.train[0]
    assert [p.name for p in case.images] == [f"brain3d_000_{c:04d}.nii.gz" for c in range(4)]
    data = read_case(spec, case)
    assert data.image.array.shape == (4, 24, 24, 24)
    assert data.image.spacing == (8.0, 8.0, 8.0)


def test_nnunet_region_labels_and_non_consecutive_values(make_msd) -> None:
    root = make_msd(labels={"background": 0, "organ": 1, "lesion": 2})
    meta = json.loads((root / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "whole": [1, 2], "core": 2}
    (root / "dataset.json").write_text(json.dumps(meta))
    spec = load_dataset(root)
    assert spec.labels == {"background": 0, "label_1": 1, "core": 2}
    assert spec.regions == {"whole": [1, 2], "core": [2]}


def test_msd_v1_single_4d_files(tmp_path: Path) -> None:
    root = tmp_path / "Task01"
    rng = np.random.default_rng(1)
    for cid in ("BRATS_001", "BRATS_002"):
        write_image(
            Image.from_array(rng.normal(size=(2, 6, 6, 5)).astype(np.float32)),
            root / "imagesTr" / f"{cid}.nii.gz",
        )
        lab = np.zeros((6, 6, 5), np.uint8)
        lab[2:4, 2:4, 1:3] = 3  # a non-consecutive value: renumbered to 2
        write_nii(root / "labelsTr" / f"{cid}.nii.gz", lab)
    meta = {
        "name": "BrainTumour",
        "modality": {"0": "FLAIR", "1": "T1w"},
        "labels": {"0": "background", "1": "edema", "3": "enhancing"},
        "numTraining": 2,
        "training": [
            {"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"}
            for c in ("BRATS_001", "BRATS_002")
        ],
        "test": [],
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    spec = load_dataset(root)
    assert spec.name == "BrainTumour" and [c.case_id for c in spec.train] == ["BRATS_001", "BRATS_002"]
    assert spec.labels == {"background": 0, "edema": 1, "enhancing": 2}
    assert spec.label_map == {0: 0, 1: 1, 3: 2}
    data = read_case(spec, spec.train[0])
    assert data.image.array.shape == (2, 6, 6, 5)
    assert set(np.unique(read_label(spec, spec.train[0]).array)) == {0, 2}


def test_num_training_mismatch_is_reported(make_msd) -> None:
    root = make_msd(n_cases=2)
    meta = json.loads((root / "dataset.json").read_text())
    meta["numTraining"] = 5
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"numTraining is 5 but 2 training cases"):
        load_dataset(root)


def test_bad_file_name_names_the_file(make_msd) -> None:
    root = make_msd(n_cases=1)
    write_nii(root / "imagesTr" / "oddname.nii.gz", np.ones((4, 4, 4), np.float32))
    with pytest.raises(DataError, match=r"oddname\.nii\.gz: expected a name like CASE_0000"):
        load_dataset(root)


def test_malformed_dataset_json(make_msd) -> None:
    root = make_msd(n_cases=1)
    (root / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot parse JSON"):
        load_dataset(root)
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"organ": 1}}))
    with pytest.raises(DataError, match="background"):
        load_dataset(root)
    meta = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1}, "regions": {"all": "1"}}
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="'regions' must map names to non-empty lists"):
        load_dataset(root)


def test_unknown_source_lists_accepted_layouts(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"did you mean 'drive'.*MSD / nnU-Net v2 folder.*CSV manifest"):
        load_dataset("driv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no dataset.json or imagesTr"):
        load_dataset(tmp_path / "empty")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="not a dataset"):
        load_dataset(tmp_path / "x.txt")
