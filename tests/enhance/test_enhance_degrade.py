"""``medsight degrade`` (API and CLI): seeded, logged, the formats of each degradation, inputs never
overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from medsight.data.degradations import fft2c
from medsight.errors import DataError
from medsight.io import Image, read_image, write_image
from medsight.tasks.enhance import degrade
from medsight.tasks.enhance.example import phantom


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    vol = phantom(32, 3, np.random.default_rng(0))
    return write_image(Image.from_array(vol[None], spacing=(1.0, 1.5, 2.0)), tmp_path / "in" / "head.nii.gz")


def test_kspace_npy_is_the_masked_fft_and_seeded(volume: Path, tmp_path: Path) -> None:
    a = degrade(volume, tmp_path / "a.npy", "kspace:4x", seed=3)[0]
    b = degrade(volume, tmp_path / "b.npy", "kspace:4x", seed=3)[0]
    c = degrade(volume, tmp_path / "c.npy", "kspace:4x", seed=4)[0]
    ka, kb, kc = (np.load(p) for p in (a, b, c))
    np.testing.assert_array_equal(ka, kb)
    assert not np.array_equal(ka != 0, kc != 0)  # another seed, another mask
    clean = np.moveaxis(read_image(volume).array[0], -1, 0)
    sampled = ka[0] != 0
    np.testing.assert_allclose(ka[0][sampled], fft2c(clean[0])[sampled], rtol=1e-4, atol=1e-5)
    assert sampled.any(axis=0).sum() == 8  # 32 / 4 lines
    log = json.loads((tmp_path / "a.npy.degradation.json").read_text())
    assert log["seed"] == 3 and log["degradation"]["spec"].startswith("kspace:4x,pattern=equispaced")


def test_h5_kspace_and_image_outputs(volume: Path, tmp_path: Path) -> None:
    h5 = degrade(volume, tmp_path / "k.h5", "kspace:4x")[0]
    with h5py.File(h5) as f:
        assert f["kspace"].shape == (3, 32, 32) and f["mask"].shape == (32, 32)
    noisy = degrade(volume, tmp_path / "noisy.nii.gz", "rician:0.05")[0]
    src, out = read_image(volume), read_image(noisy)
    assert out.same_geometry(src) and not np.allclose(out.array, src.array)
    low = read_image(degrade(volume, tmp_path / "low.nii.gz", "sr:2x")[0])
    assert low.shape == (16, 16, 3) and low.spacing == (2.0, 3.0, 2.0)


def test_inputs_are_never_overwritten(volume: Path) -> None:
    with pytest.raises(DataError, match="would overwrite an input"):
        degrade(volume, volume, "gaussian:0.1")


def test_cli_verb(volume: Path, tmp_path: Path) -> None:
    from medsight.cli.main import app

    result = CliRunner().invoke(
        app, ["degrade", "--input", str(volume.parent), "--output", str(tmp_path / "out"),
              "--degradation", "gaussian:0.05", "--seed", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "head.nii.gz").is_file() and (tmp_path / "out" / "degradation.json").is_file()
    bad = CliRunner().invoke(app, ["degrade", "--input", str(volume), "--output", str(tmp_path / "x.nii.gz"),
                                   "--degradation", "blur:3"])  # fmt: skip
    assert bad.exit_code != 0
