"""Phantoms: deterministic in the seed, labels that make sense, a valid dataset folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medsight.data import load_dataset, make_phantom_dataset, read_case, validate_dataset
from medsight.data.phantom_brain import CHANNELS, brain_case
from medsight.data.phantom_fundus import fundus_case
from medsight.errors import DataError


def test_fundus_is_deterministic_and_labels_are_sane() -> None:
    a = fundus_case(np.random.default_rng([0, 0, 1]), 96)
    b = fundus_case(np.random.default_rng([0, 0, 1]), 96)
    c = fundus_case(np.random.default_rng([1, 0, 1]), 96)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])
    rgb, label, fov = a
    assert rgb.shape == (3, 96, 96) and rgb.dtype == np.uint8
    assert 0.03 < label.mean() / fov.mean() < 0.3  # vessels cover a few % of the field of view (DRIVE ~12%)
    assert not (label.astype(bool) & ~fov.astype(bool)).any()
    green = rgb[1].astype(float)
    inside = fov.astype(bool)
    assert green[label.astype(bool)].mean() < green[inside & ~label.astype(bool)].mean() - 5  # vessels darker
    assert rgb[:, ~inside].mean() < 15  # dark outside the field of view


def test_brain_is_deterministic_and_tissues_follow_the_contrasts() -> None:
    img, lab = brain_case(np.random.default_rng(5), 32)
    img2, lab2 = brain_case(np.random.default_rng(5), 32)
    assert np.array_equal(img, img2) and np.array_equal(lab, lab2)
    assert img.shape == (len(CHANNELS), 32, 32, 32) and img.dtype == np.float32
    assert set(np.unique(lab)) <= {0, 1, 2, 3} and (lab == 2).any() and (lab == 3).any()
    t1, t1c, t2, flair = (img[i] / np.median(img[i][img[i] > img[i].max() * 0.2]) for i in range(4))
    enh, edema = lab == 3, lab == 2
    assert t1c[enh].mean() > 1.15 * t1[enh].mean()  # the rim enhances after contrast
    assert flair[edema].mean() > flair[lab == 0].mean()  # edema is bright in FLAIR
    border = np.zeros_like(lab, dtype=bool)
    border[[0, -1]] = border[:, [0, -1]] = border[:, :, [0, -1]] = True
    assert not (lab[border] > 0).any()  # the tumour lies inside the head


def test_phantom_folder_is_valid_and_reproducible(tmp_path: Path) -> None:
    a = make_phantom_dataset(tmp_path / "a", "brain3d", n_train=2, n_test=1, seed=3, size=20)
    b = make_phantom_dataset(tmp_path / "b", "brain3d", n_train=3, n_test=1, seed=3, size=20)
    spec_a, spec_b = load_dataset(a), load_dataset(b)
    assert validate_dataset(spec_a) == []
    for x, y in ((spec_a.train[1], spec_b.train[1]), (spec_a.test[0], spec_b.test[0])):
        da, db = read_case(spec_a, x), read_case(spec_b, y)
        assert np.array_equal(da.image.array, db.image.array) and np.array_equal(
            da.label.array, db.label.array
        )


def test_phantom_refuses_non_empty_dest_and_bad_kind(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not an empty folder"):
        make_phantom_dataset(tmp_path / "d", n_train=1, n_test=0, size=32)
    assert (tmp_path / "d" / "keep.txt").read_text() == "mine"
    with pytest.raises(DataError, match="unknown; choose one of fundus2d, brain3d"):
        make_phantom_dataset(tmp_path / "e", kind="knee")
