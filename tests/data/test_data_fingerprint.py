"""Fingerprint values against numpy, the cache, and the JSON round trip."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from data_testutils import write_nii

from medsight.data import Fingerprint, fingerprint_dataset, load_dataset
from medsight.errors import ConfigError
from medsight.utils import shared_data_root


def _dataset(tmp_path: Path) -> tuple[Path, list[np.ndarray], list[np.ndarray]]:
    """Two 2-channel cases, anisotropic spacing, a small foreground (fewer voxels than the sample budget)."""
    root = tmp_path / "fp"
    rng = np.random.default_rng(3)
    images, labels = [], []
    for i, shape in enumerate([(10, 9, 4), (12, 9, 6)]):
        img = rng.normal(50 * (i + 1), 5, (2, *shape)).astype(np.float32)
        lab = np.zeros(shape, np.uint8)
        lab[2:5, 2:6, 1:3] = 1
        lab[6:8, 1:3, 0:2] = 2 if i == 0 else 0
        for c in range(2):
            write_nii(root / "imagesTr" / f"c{i}_{c:04d}.nii.gz", img[c], spacing=(0.8, 0.8, 3.0))
        write_nii(root / "labelsTr" / f"c{i}.nii.gz", lab, spacing=(0.8, 0.8, 3.0))
        images.append(img)
        labels.append(lab)
    meta = {
        "channel_names": {"0": "T2", "1": "CT"},
        "labels": {"background": 0, "a": 1, "b": 2},
        "numTraining": 2,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root, images, labels


def test_fingerprint_matches_numpy(tmp_path: Path) -> None:
    root, images, labels = _dataset(tmp_path)
    fp = fingerprint_dataset(load_dataset(root), cache_dir=tmp_path / "c")
    assert fp.dim == 3 and fp.num_train == 2 and fp.num_channels == 2
    assert fp.modality == {0: "MR", 1: "CT"} and fp.intensity_source == "foreground"
    assert fp.median_shape == [11.0, 9.0, 5.0] and fp.min_shape == [10, 9, 4] and fp.max_shape == [12, 9, 6]
    assert fp.median_spacing == pytest.approx([0.8, 0.8, 3.0]) and fp.anisotropy == pytest.approx(3.75)
    for c in range(2):
        fg = np.concatenate([img[c][lab > 0] for img, lab in zip(images, labels, strict=True)]).astype(
            np.float64
        )
        st = fp.intensity[c]
        assert st.n_samples == fg.size
        assert st.mean == pytest.approx(fg.mean()) and st.std == pytest.approx(fg.std())
        assert st.median == pytest.approx(np.median(fg))
        assert st.percentile_00_5 == pytest.approx(np.percentile(fg, 0.5))
        assert st.percentile_99_5 == pytest.approx(np.percentile(fg, 99.5))
        assert (st.min, st.max) == (pytest.approx(fg.min()), pytest.approx(fg.max()))
    case0 = fp.cases[0]
    assert case0.shape == [10, 9, 4] and case0.class_voxels == {0: 360 - 24 - 8, 1: 24, 2: 8}
    b = next(c for c in fp.classes if c.name == "b")
    assert (b.cases_present, b.fraction_present) == (1, 0.5)
    assert b.mean_voxel_fraction == pytest.approx((8 / 360 + 0) / 2)
    assert fp.issues == []


def test_fingerprint_cache_hit_and_invalidation(tmp_path: Path) -> None:
    root, _, _ = _dataset(tmp_path)
    cache = tmp_path / "cache"
    fp = fingerprint_dataset(root, cache_dir=cache)
    (entry,) = list(cache.glob("*.json"))
    doctored = json.loads(entry.read_text())
    doctored["anisotropy"] = 99.0  # only a cache hit can return this value
    entry.write_text(json.dumps(doctored))
    assert fingerprint_dataset(root, cache_dir=cache).anisotropy == 99.0
    assert fingerprint_dataset(root, cache_dir=cache, use_cache=False).anisotropy == fp.anisotropy
    label = root / "labelsTr" / "c0.nii.gz"
    st = label.stat()
    os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a changed file: a new key
    again = fingerprint_dataset(root, cache_dir=cache)
    assert again.cache_key != fp.cache_key and len(list(cache.glob("*.json"))) == 2


def test_fingerprint_json_round_trip_and_issues(tmp_path: Path) -> None:
    root, _, _ = _dataset(tmp_path)
    write_nii(root / "labelsTr" / "c1.nii.gz", np.zeros((3, 3, 3), np.uint8))
    fp = fingerprint_dataset(root, cache_dir=tmp_path / "c")
    assert [str(i) for i in fp.data_issues] == ["c1 label: shape (3, 3, 3) does not match image (12, 9, 6)"]
    assert fp.num_train == 2 and [c.case_id for c in fp.cases] == ["c0"]  # the broken case is left out
    back = Fingerprint.from_json(fp.to_json(tmp_path / "fp.json"))
    assert back == fp and Fingerprint.from_json(tmp_path / "fp.json") == fp


def test_cache_dir_inside_shared_data_is_refused(tmp_path: Path) -> None:
    shared = shared_data_root()
    if shared is None:
        pytest.skip("real data folder ../shared/data not found")
    root, _, _ = _dataset(tmp_path)
    with pytest.raises(ConfigError, match="must not be inside the read-only data folder"):
        fingerprint_dataset(root, cache_dir=shared / "cache")


def test_default_cache_follows_medsight_cache(tmp_path: Path) -> None:
    root, _, _ = _dataset(tmp_path)
    fingerprint_dataset(root)  # the autouse fixture points MEDSIGHT_CACHE at tmp_path / "cache"
    assert len(list((tmp_path / "cache" / "fingerprints").glob("fp-*.json"))) == 1
