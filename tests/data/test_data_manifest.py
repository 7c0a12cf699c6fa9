"""CSV manifests: columns, paths relative to the CSV, labels inferred from the files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_testutils import write_nii

from medsight.data import load_dataset, read_case, read_label
from medsight.errors import DataError
from medsight.io import Image, write_image


def _pictures(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        write_image(
            Image.from_array(rng.integers(0, 255, (3, 12, 10), dtype=np.uint8)), root / "img" / f"p{i}.png"
        )
        mask = np.zeros((12, 10), np.uint8)
        mask[2:6, 3:7] = 255
        write_image(Image.from_array(mask, channel_first=False), root / "mask" / f"p{i}.png")


def test_manifest_with_patients_splits_and_0_255_masks(tmp_path: Path) -> None:
    _pictures(tmp_path, 4)
    rows = ["image,label,patient_id,split"] + [
        f"img/p{i}.png,mask/p{i}.png,pat{i // 2},{'test' if i == 3 else 'train'}" for i in range(4)
    ]
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    spec = load_dataset(tmp_path / "cases.csv")
    assert [c.case_id for c in spec.train] == ["p0", "p1", "p2"] and [c.case_id for c in spec.test] == ["p3"]
    assert [c.patient for c in spec.train] == ["pat0", "pat0", "pat1"]
    assert spec.channel_names == {0: "R", 1: "G", 2: "B"}
    assert spec.labels == {"background": 0, "class_1": 1} and spec.label_map == {0: 0, 255: 1}
    label = read_label(spec, spec.train[0])
    assert label.array.dtype == np.uint8 and label.array.max() == 1 and label.array.sum() == 16


def test_manifest_channel_columns_case_ids_and_roi(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for cid in ("a", "b"):
        for c in range(2):
            write_nii(tmp_path / f"{cid}_{c:04d}.nii.gz", rng.normal(size=(5, 5, 4)).astype(np.float32))
        lab = np.zeros((5, 5, 4), np.uint8)
        lab[1:3, 1:3, 1:3] = 2
        write_nii(tmp_path / f"{cid}_seg.nii.gz", lab)
        write_nii(tmp_path / f"{cid}_roi.nii.gz", np.ones((5, 5, 4), np.uint8))
    text = "Image_0000,image_0001,label,roi\n" + "".join(
        f"{c}_0000.nii.gz,{c}_0001.nii.gz,{c}_seg.nii.gz,{c}_roi.nii.gz\n" for c in ("a", "b")
    )
    (tmp_path / "m.csv").write_text(text)
    spec = load_dataset(str(tmp_path / "m.csv"))
    assert [c.case_id for c in spec.train] == ["a", "b"] and spec.num_channels == 2
    assert spec.labels == {"background": 0, "class_1": 1} and spec.label_map == {0: 0, 2: 1}
    data = read_case(spec, spec.train[1])
    assert data.image.array.shape == (2, 5, 5, 4) and data.roi.array.all()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("label\nx.png\n", "needs an 'image' column"),
        ("image,split\np0.png,val\n", r"row 2 \(p0\): split must be 'train' or 'test'"),
        ("image\np0.png\nsub/p0.png\n", r"row 3: case id 'p0' already used on row 2"),
        ("image,label\n,\n", "row 2: empty image"),
        ("image\n", "no rows"),
    ],
)
def test_manifest_errors_name_the_row(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path / "bad.csv")
