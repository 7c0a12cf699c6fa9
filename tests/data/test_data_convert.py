"""convert_to_msd: any layout to an nnU-Net v2 folder that loads back the same."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medsight.data import convert_to_msd, load_dataset, read_case, read_label, validate_dataset
from medsight.errors import DataError
from medsight.io import Image, write_image


def _label_values(spec) -> set[int]:
    return {int(v) for c in spec.cases if c.label for v in np.unique(read_label(spec, c).array)}


def test_brain_phantom_round_trip(brain_root: Path, tmp_path: Path) -> None:
    src = load_dataset(brain_root)
    out = convert_to_msd(brain_root, tmp_path / "out")
    spec = load_dataset(out)
    assert (len(spec.train), len(spec.test)) == (len(src.train), len(src.test))
    assert (
        spec.labels == src.labels and spec.regions == src.regions and spec.channel_names == src.channel_names
    )
    assert _label_values(spec) == _label_values(src)
    a, b = read_case(src, src.train[0]), read_case(spec, spec.train[0])
    assert np.array_equal(a.image.array, b.image.array) and a.image.same_geometry(b.image)
    assert validate_dataset(spec) == []


def test_fundus_round_trip_keeps_one_rgb_png_and_rois(fundus_root: Path, tmp_path: Path) -> None:
    out = convert_to_msd(fundus_root, tmp_path / "out")
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["file_ending"] == ".png" and meta["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    assert sorted(p.name for p in (out / "imagesTr").iterdir())[:2] == [
        "fundus2d_000_0000.png",
        "fundus2d_001_0000.png",
    ]
    spec = load_dataset(out)
    assert all(c.roi is not None for c in spec.cases) and _label_values(spec) == {0, 1}


def test_csv_with_0_255_masks_becomes_consecutive(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = ["image,label,patient_id"]
    for i in range(3):
        write_image(Image.from_array(rng.integers(0, 255, (1, 9, 7), dtype=np.uint8)), tmp_path / f"i{i}.png")
        mask = np.zeros((9, 7), np.uint8)
        mask[2:5, 2:5] = 255
        write_image(Image.from_array(mask, channel_first=False), tmp_path / f"m{i}.png")
        rows.append(f"i{i}.png,m{i}.png,pt{i % 2}")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    out = convert_to_msd(tmp_path / "cases.csv", tmp_path / "msd")
    spec = load_dataset(out)
    assert spec.label_map is None and spec.labels == {"background": 0, "class_1": 1}
    assert _label_values(spec) == {0, 1} and [c.patient for c in spec.train] == ["pt0", "pt1", "pt0"]


def test_convert_refuses_a_non_empty_destination(fundus_root: Path, tmp_path: Path) -> None:
    dest = tmp_path / "taken"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not an empty folder"):
        convert_to_msd(fundus_root, dest)
    assert [p.name for p in dest.iterdir()] == ["notes.txt"]


@pytest.mark.realdata
def test_convert_drive(data_root: Path, tmp_path: Path) -> None:
    drive = load_dataset("drive", data_root=data_root)
    assert (len(drive.train), len(drive.test)) == (20, 20)
    subset = replace(drive, train=drive.train[:2], test=drive.test[:2])  # PNG encoding is slow: 4 of 40 cases
    spec = load_dataset(convert_to_msd(subset, tmp_path / "drive"))
    assert (len(spec.train), len(spec.test)) == (2, 2) and spec.file_ending == ".png"
    assert [c.case_id for c in spec.test] == [c.case_id for c in subset.test]
    case = read_case(spec, spec.test[0])
    assert case.image.array.shape == (3, 584, 565) and set(np.unique(case.label.array)) == {0, 1}
    assert case.roi is not None and 0.6 < case.roi.array.mean() < 0.75
    assert np.array_equal(case.label.array, read_label(drive, drive.test[0]).array)
