"""Classification datasets: MedMNIST files, class folders, CSV manifests (single- and multi-label)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from classify_testutils import bar_images, class_folders, medmnist_like

from medsight.data.classification import load_classification
from medsight.errors import DataError


def test_medmnist_file_keeps_official_splits(tmp_path: Path) -> None:
    data = load_classification(medmnist_like(tmp_path / "squares.npz"))
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [64, 24, 24]
    assert data.problem == "binary" and data.dim == 2 and data.channels == 1
    assert data.train[0].read().shape == (1, 28, 28)
    assert data.class_counts().tolist() == [32, 32]


@pytest.mark.realdata
def test_medmnist_name_reads_shared_copy_with_class_names(data_root: Path) -> None:
    data = load_classification("breastmnist")
    assert data.problem == "binary" and data.class_names == ["malignant", "normal, benign"]
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [546, 78, 156]


def test_class_folders_become_classes(tmp_path: Path) -> None:
    data = load_classification(class_folders(tmp_path / "pics"))
    assert data.class_names == ["horizontal", "vertical"] and len(data.train) == 12
    assert "val" not in data.splits  # folds are made later, at patient level


def test_csv_single_label_with_names_splits_and_patients(tmp_path: Path) -> None:
    class_folders(tmp_path / "pics", n=6)
    files = sorted((tmp_path / "pics").rglob("*.png"))
    lines = ["image,label,patient_id,split"] + [
        f"pics/{f.parent.name}/{f.name},{f.parent.name},p{i // 2},{'test' if i == 5 else 'train'}"
        for i, f in enumerate(files)
    ]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    data = load_classification(tmp_path / "m.csv")
    assert (
        data.class_names == ["horizontal", "vertical"]
        and len(data.train) == 5
        and len(data.splits["test"]) == 1
    )
    assert data.train[0].patient == "p0"


def test_csv_multilabel_finds_images_by_id(tmp_path: Path) -> None:
    from PIL import Image as PILImage

    (tmp_path / "images").mkdir()
    images, _ = bar_images(4, 16, rgb=True)
    for i, img in enumerate(images):
        PILImage.fromarray(img).save(tmp_path / "images" / f"ID_{i}.jpg")
    rows = ["image,globules,streaks"] + [f"ID_{i},{i % 2},{int(i > 1)}" for i in range(4)]
    (tmp_path / "attributes.csv").write_text("\n".join(rows) + "\n")
    data = load_classification(tmp_path / "attributes.csv")
    assert data.problem == "multilabel" and data.class_names == ["globules", "streaks"]
    assert data.labels("train").tolist() == [[0, 0], [1, 0], [0, 1], [1, 1]]
    assert data.channels == 3


def test_csv_errors_name_row_and_field(tmp_path: Path) -> None:
    class_folders(tmp_path / "pics", n=2)
    f = sorted((tmp_path / "pics").rglob("*.png"))[0]
    rel = f"pics/{f.parent.name}/{f.name}"
    (tmp_path / "bad_split.csv").write_text(f"image,label,split\n{rel},a,holdout\n{rel},b,train\n")
    with pytest.raises(DataError, match=r"row 2: split must be one of train, val, test, found 'holdout'"):
        load_classification(tmp_path / "bad_split.csv")
    (tmp_path / "missing.csv").write_text("image,label\nnope.png,a\n")
    with pytest.raises(DataError, match=r"row 2: image 'nope.png' not found"):
        load_classification(tmp_path / "missing.csv")
    (tmp_path / "ml.csv").write_text(f"image,x,y\n{rel},1,2\n")
    with pytest.raises(DataError, match="must hold 0 or 1"):
        load_classification(tmp_path / "ml.csv")


def test_ordinal_problem_can_be_forced_but_not_on_multilabel(tmp_path: Path) -> None:
    data = load_classification(medmnist_like(tmp_path / "squares.npz"), problem="ordinal")
    assert data.problem == "ordinal"
    with pytest.raises(DataError, match="expected one of"):
        load_classification(tmp_path / "squares.npz", problem="regression")


def test_unknown_source_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a MedMNIST .npz, a class folder, a CSV manifest"):
        load_classification("no-such-thing")
    np.savez(tmp_path / "broken.npz", train_images=np.zeros((2, 4, 4)))
    with pytest.raises(DataError, match="val_images"):
        load_classification(tmp_path / "broken.npz")
