"""Folders in a registered dataset's own layout load by their structure, whatever their name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.data import DATASETS, load_dataset, read_case
from medsight.data.loader import matching_adapters
from medsight.errors import DataError


def _picture(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(array).save(path)


def _drive_like(root: Path) -> Path:
    """Two DRIVE-style cases (one training, one test) of 16x16 pixels."""
    rng = np.random.default_rng(0)
    vessel = np.zeros((16, 16), np.uint8)
    vessel[4:12, 7:9] = 255
    fov = np.full((16, 16), 255, np.uint8)
    for sub, number, tag in (("training", "21", "training"), ("testing", "01", "test")):
        _picture(root / sub / "images" / f"{number}_{tag}.tif", rng.integers(0, 255, (16, 16, 3), np.uint8))
        _picture(root / sub / "1st_manual" / f"{number}_manual1.gif", vessel)
        _picture(root / sub / "mask" / f"{number}_{tag}_mask.gif", fov)
    return root


def _isbi_like(root: Path) -> Path:
    """ISBI 2012-style slices: two labelled training PNGs and one test PNG, 16x16."""
    rng = np.random.default_rng(1)
    label = np.full((16, 16), 255, np.uint8)
    label[:, 8] = 0  # a membrane (black) line
    for i in range(2):
        _picture(root / "train" / "image" / f"{i}.png", rng.integers(0, 255, (16, 16), np.uint8))
        _picture(root / "train" / "label" / f"{i}.png", label)
    _picture(root / "test" / "image" / "0.png", rng.integers(0, 255, (16, 16), np.uint8))
    return root


def test_structure_is_recognised_whatever_the_folder_name(tmp_path: Path) -> None:
    drive = _drive_like(tmp_path / "my_fundus_copy")
    isbi = _isbi_like(tmp_path / "em-slices")
    assert [a.name for a in matching_adapters(drive)] == ["drive"]
    assert [a.name for a in matching_adapters(isbi)] == ["isbi2012"]
    assert not any(DATASETS.get(n).matches(tmp_path) for n in DATASETS)  # the parent is no dataset
    spec = load_dataset(drive)
    assert spec.name == "drive" and [c.case_id for c in spec.train + spec.test] == ["drive_21", "drive_01"]
    case = read_case(spec, spec.train[0])
    assert case.image.array.shape == (3, 16, 16) and int(case.label.array.sum()) == 16  # 255 -> 1
    em = load_dataset(isbi)
    assert em.name == "isbi2012" and (len(em.train), len(em.test)) == (2, 1)
    assert int(read_case(em, em.train[0]).label.array.sum()) == 16  # the black line is the membrane


def test_partial_layout_is_not_matched(tmp_path: Path) -> None:
    drive = _drive_like(tmp_path / "drive")
    for f in (drive / "training" / "1st_manual").iterdir():
        f.unlink()  # images without their manual tracings: not the DRIVE layout
    assert matching_adapters(drive) == []
    with pytest.raises(DataError, match=r"no dataset.json or imagesTr.*drive: training/images/\*\.tif"):
        load_dataset(drive)


def test_unknown_folder_error_lists_every_layout(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path / "empty")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'empty'}: folder has no dataset.json")
    assert "MSD / nnU-Net v2 folder" in message and "CSV manifest" in message
    for name in DATASETS:
        if DATASETS.get(name).targets == "label maps":
            assert f"{name}: " in message, name  # each registered layout is spelled out


def test_dataset_json_comes_first(tmp_path: Path) -> None:
    """A converted folder that also keeps a DRIVE-like tree is read as the MSD folder it declares."""
    root = _drive_like(tmp_path / "both")
    meta = {"channel_names": {"0": "EM"}, "labels": {"background": 0, "x": 1}, "file_ending": ".png"}
    (root / "dataset.json").write_text(json.dumps(meta))
    _picture(root / "imagesTr" / "case_0000.png", np.zeros((8, 8), np.uint8))
    _picture(root / "labelsTr" / "case.png", np.eye(8, dtype=np.uint8))
    spec = load_dataset(root)
    assert [c.case_id for c in spec.cases] == ["case"] and spec.channel_names == {0: "EM"}


@pytest.mark.realdata
@pytest.mark.parametrize(("name", "folder"), [("drive", "drive"), ("isbi2012", "isbi2012-em")])
def test_real_folder_path_equals_registered_name(data_root: Path, name: str, folder: str) -> None:
    by_path = load_dataset(data_root / folder)
    by_name = load_dataset(name, data_root=data_root)
    assert by_path.name == by_name.name == name
    assert [(c.case_id, c.images, c.label) for c in by_path.cases] == [
        (c.case_id, c.images, c.label) for c in by_name.cases
    ]
    assert by_path.labels == by_name.labels and by_path.label_map == by_name.label_map


@pytest.mark.realdata
def test_cli_converts_the_drive_folder_by_path(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "Dataset001_DRIVE"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "medsight.cli.main",
            "convert",
            str(data_root / "drive"),
            "--to-msd",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    spec = load_dataset(out)
    assert (len(spec.train), len(spec.test)) == (20, 20) and spec.labels == {"background": 0, "vessel": 1}
