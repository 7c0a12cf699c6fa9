"""NumPy files and MedMNIST archives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medsight.errors import DataError
from medsight.io import Image, read_image, write_image
from medsight.io.npz import read_medmnist


def test_plain_npy_and_npz(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.ones((4, 5), np.float32))
    assert read_image(tmp_path / "a.npy").array.shape == (1, 4, 5)
    np.savez(tmp_path / "v.npz", vol=np.zeros((3, 4, 5)))
    assert read_image(tmp_path / "v.npz").array.shape == (1, 3, 4, 5)
    np.savez(tmp_path / "two.npz", vol=np.zeros((3, 4, 5)), seg=np.zeros((3, 4, 5), np.uint8))
    with pytest.raises(DataError, match="pass key="):
        read_image(tmp_path / "two.npz")
    assert read_image(tmp_path / "two.npz", key="seg").array.dtype == np.uint8
    with pytest.raises(DataError, match="key 'nope' not found"):
        read_image(tmp_path / "two.npz", key="nope")


def test_npz_round_trip_keeps_geometry(tmp_path: Path) -> None:
    img = Image(
        np.arange(60, dtype=np.float32).reshape(1, 3, 4, 5), (1.0, 2.0, 3.0), (4.0, 5.0, 6.0), -np.eye(3)
    )
    back = read_image(write_image(img, tmp_path / "img.npz"))
    np.testing.assert_array_equal(back.array, img.array)
    assert back.same_geometry(img)
    back_npy = read_image(write_image(img, tmp_path / "img.npy"))
    np.testing.assert_array_equal(back_npy.array, img.array)


def test_bad_numpy_files(tmp_path: Path) -> None:
    np.save(tmp_path / "empty.npy", np.zeros((0, 4)))
    with pytest.raises(DataError, match="empty"):
        read_image(tmp_path / "empty.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="obj.npy"):
        read_image(tmp_path / "obj.npy")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(DataError, match="junk.npz"):
        read_image(tmp_path / "junk.npz")


def _medmnist(path: Path, drop: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (n, 1), dtype=np.uint8)
    arrays.pop(drop, None)
    np.savez(path, **arrays)
    return path


def test_medmnist_layout(tmp_path: Path) -> None:
    data = read_medmnist(_medmnist(tmp_path / "m.npz"))
    assert set(data) == {"train", "val", "test"}
    images, labels = data["train"]
    assert images.shape == (6, 28, 28) and labels.shape == (6,)
    with pytest.raises(DataError, match="'val_labels' missing"):
        read_medmnist(_medmnist(tmp_path / "bad.npz", drop="val_labels"))
    np.savez(tmp_path / "mismatch.npz", **{
        "train_images": np.zeros((3, 2, 2), np.uint8), "train_labels": np.zeros(2, np.uint8),
        "val_images": np.zeros((1, 2, 2), np.uint8), "val_labels": np.zeros(1, np.uint8),
        "test_images": np.zeros((1, 2, 2), np.uint8), "test_labels": np.zeros(1, np.uint8),
    })  # fmt: skip
    with pytest.raises(DataError, match="train_labels: expected 3 labels"):
        read_medmnist(tmp_path / "mismatch.npz")


def test_real_medmnist(data_root: Path) -> None:
    data = read_medmnist(data_root / "medmnist" / "breastmnist.npz")
    assert [len(data[s][1]) for s in ("train", "val", "test")] == [546, 78, 156]
