"""Box datasets: COCO, CSV, MONAI 3D JSON and label maps -> boxes; every problem named at once."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medsight.data.boxes import array_order, component_boxes, load_boxes
from medsight.errors import DataError


def _coco(folder: Path, annotations: list[dict], images: list[dict] | None = None) -> Path:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((40, 50), np.uint8)).save(folder / "images" / name)
    images = images or [
        {"id": 1, "file_name": "a.png", "width": 50, "height": 40, "metadata": {"patientid": "p1"}},
        {"id": 2, "file_name": "b.png", "width": 50, "height": 40, "metadata": {"patientid": "p1"}},
    ]
    content = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 3, "name": "lesion"}, {"id": 7, "name": "cyst"}],
    }
    path = folder / "annotations.json"
    path.write_text(json.dumps(content))
    return path


def test_coco_boxes_classes_negatives_and_patients(tmp_path: Path) -> None:
    path = _coco(tmp_path, [{"id": 10, "image_id": 1, "category_id": 7, "bbox": [5, 6, 10, 20]}])
    data = load_boxes(path)
    a, b = data.train
    assert data.class_names == ["lesion", "cyst"] and data.category_ids == [3, 7] and data.dim == 2
    np.testing.assert_allclose(a.boxes.coords, [[5, 6, 15, 26]])  # x0, y0, x1, y1 (x = column)
    assert a.boxes.labels.tolist() == [1] and a.extra["size"] == (40, 50)
    assert len(b.boxes.coords) == 0  # an image without boxes is a negative, not an error
    assert a.patient == b.patient == "p1"
    assert load_boxes(tmp_path).train[0].case_id == "a"  # the folder holding annotations.json


def test_every_problem_is_named_with_file_annotation_and_field(tmp_path: Path) -> None:
    images = [
        {"id": 1, "file_name": "a.png", "width": 50, "height": 40},
        {"id": 1, "file_name": "b.png", "width": 50, "height": 40},
        {"id": 2, "file_name": "missing.png", "width": 50, "height": 40},
    ]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [45, 0, 20, 10]},  # outside (x1 = 65 > 50)
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [1, 1, 0, 5]},  # zero width
        {"id": 3, "image_id": 1, "category_id": 9, "bbox": [1, 1, 5, 5]},  # unknown category
        {"id": 4, "image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5]},  # fine
    ]
    path = _coco(tmp_path, anns, images)
    with pytest.raises(DataError) as err:
        load_boxes(path)
    text = str(err.value)
    assert "5 problem(s)" in text
    for expected in (
        "annotation 1: bbox: box [45.0, 0.0, 65.0, 10.0] outside the image",
        "annotation 2: bbox: expected width and height > 0",
        "annotation 3: category_id: expected one of [3, 7], found 9",
        "image 1: id: duplicate image id",
        "image 2: file_name: no file",
    ):
        assert f"{path}: {expected}" in text, expected
    data = load_boxes(path, strict=False)  # what fingerprint lists
    assert len(data.issues) == 5 and len(data.train) == 1 and len(data.train[0].boxes.coords) == 1
    assert len(data.describe()["problems"]) == 5


def test_csv_of_boxes(tmp_path: Path) -> None:
    for name in ("x.png", "y.png"):
        Image.fromarray(np.zeros((30, 20), np.uint8)).save(tmp_path / name)
    rows = [
        ["image", "x0", "y0", "x1", "y1", "label", "patient_id", "split"],
        ["x.png", "1", "2", "11", "12", "nodule", "p1", "train"],
        ["x.png", "0", "0", "5", "5", "mass", "p1", "train"],
        ["y.png", "", "", "", "", "", "p2", "test"],
        ["y.png", "3", "3", "2", "9", "mass", "p2", "test"],
    ]
    with (tmp_path / "boxes.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    data = load_boxes(tmp_path / "boxes.csv", strict=False)
    assert data.class_names == ["mass", "nodule"]
    assert data.train[0].boxes.labels.tolist() == [1, 0] and data.train[0].patient == "p1"
    assert len(data.splits["test"][0].boxes.coords) == 0
    assert [str(i) for i in data.issues] == [
        f"{tmp_path / 'boxes.csv'}: line 5: x1/y1: expected x1 > x0 and y1 > y0, found [3.0, 3.0, 2.0, 9.0]"
    ]


def test_monai_box_json_world_and_voxel(tmp_path: Path) -> None:
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = [10, 20, 30]
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 10), np.float32), affine), tmp_path / "ct.nii.gz")
    # world centre (30, 40, 45) = voxel (10, 10, 5); size (8, 4, 6) mm = (4, 2, 2) voxels
    content = {"training": [{"image": "ct.nii.gz", "box": [[30, 40, 45, 8, 4, 6]], "label": [2]}]}
    (tmp_path / "boxes.json").write_text(json.dumps(content))
    data = load_boxes(tmp_path / "boxes.json")
    np.testing.assert_allclose(data.train[0].boxes.coords, [[8, 9, 4, 12, 11, 6]], atol=1e-9)
    assert data.dim == 3 and data.class_names == ["class_2"]
    content["classes"] = {"2": "nodule"}
    (tmp_path / "boxes.json").write_text(json.dumps(content))
    assert load_boxes(tmp_path / "boxes.json").class_names == ["nodule"]
    content["classes"] = ["nodule"]
    (tmp_path / "boxes.json").write_text(json.dumps(content))
    with pytest.raises(DataError, match=r"boxes\.json: classes: expected .*, found \['nodule'\]"):
        load_boxes(tmp_path / "boxes.json")
    del content["classes"]
    content.update({"coordinates": "voxel", "box_mode": "xyzxyz"})
    content["training"][0]["box"] = [[1, 2, 3, 30, 5, 6]]
    (tmp_path / "boxes.json").write_text(json.dumps(content))
    with pytest.raises(
        DataError, match=r"training\[0\]\.box\[0\]: box: box .* outside the image \[20, 20, 10\]"
    ):
        load_boxes(tmp_path / "boxes.json")


def test_component_boxes_per_class_and_order() -> None:
    mask = np.zeros((10, 12), bool)
    mask[2:8, 3:11] = True  # rows 2..7, columns 3..10: 48 pixels
    mask[9, 0] = True  # a speck
    assert component_boxes(mask, min_voxels=2) == [[3.0, 2.0, 11.0, 8.0]]
    assert len(component_boxes(mask, min_voxels=1)) == 1  # extent 1 < 0.15 * sqrt(48)
    assert len(component_boxes(mask, min_voxels=1, min_relative=0.1)) == 2
    np.testing.assert_array_equal(array_order(array_order(np.array([[1, 2, 3, 4]]), 2), 2), [[1, 2, 3, 4]])
    vol = np.zeros((6, 7, 8), bool)
    vol[1:3, 2:5, 3:8] = True
    assert component_boxes(vol, min_voxels=1) == [[1.0, 2.0, 3.0, 3.0, 5.0, 8.0]]


def test_label_map_dataset_gives_boxes(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    rows = [["image", "label"]]
    for i in range(2):
        label = np.zeros((24, 24), np.uint8)
        label[3 + i : 10, 4:12] = 1
        label[15:20, 15:22] = 2
        Image.fromarray(np.full((24, 24), 9, np.uint8)).save(tmp_path / "img" / f"c{i}.png")
        Image.fromarray(label).save(tmp_path / "img" / f"c{i}_label.png")
        rows.append([f"img/c{i}.png", f"img/c{i}_label.png"])
    with (tmp_path / "manifest.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    data = load_boxes(tmp_path / "manifest.csv")
    assert len(data.class_names) == 2 and len(data.train) == 2
    case = data.train[1]
    assert sorted(case.boxes.coords.tolist()) == [[4.0, 4.0, 12.0, 10.0], [15.0, 15.0, 22.0, 20.0]]
