"""Loading enhancement data (folders, manifests, raw k-space) and the bad-input contract: a DataError or
ConfigError that names the file, the field, what was expected and what was found."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from medsight.data.degradations import parse_degradation
from medsight.errors import ConfigError, DataError
from medsight.io import Image, write_image
from medsight.tasks.enhance.data import load_enhance_data, read_kspace, read_volume


def _volume(path: Path, seed: int, shape: tuple[int, ...] = (24, 20, 3)) -> Path:
    rng = np.random.default_rng(seed)
    return write_image(Image.from_array(rng.random(shape, dtype=np.float32)[None]), path)


def test_folder_with_splits_and_subject_folders(tmp_path: Path) -> None:
    _volume(tmp_path / "train" / "s1" / "t1.nii.gz", 0)
    _volume(tmp_path / "train" / "s1" / "t2.nii.gz", 1)
    _volume(tmp_path / "train" / "s2.nii.gz", 2, (30, 18, 2))
    _volume(tmp_path / "test" / "s3.nii.gz", 3)
    data = load_enhance_data(tmp_path)
    assert data.kind == "images" and data.modality == "MR"
    assert sorted(c.subject for c in data.train) == ["s1", "s1", "s2"]
    assert [c.subject for c in data.test] == ["s3"]
    assert data.max_plane == [30, 20]
    assert read_volume(data.test[0]).shape == (3, 24, 20)  # slices along the last axis


def test_manifest_of_pairs(tmp_path: Path) -> None:
    _volume(tmp_path / "noisy.nii.gz", 0)
    _volume(tmp_path / "clean.nii.gz", 1)
    (tmp_path / "m.csv").write_text("image,target,patient_id,split\nnoisy.nii.gz,clean.nii.gz,p1,train\n")
    data = load_enhance_data(tmp_path / "m.csv")
    assert data.kind == "pairs" and data.train[0].target == tmp_path / "clean.nii.gz"
    (tmp_path / "bad.csv").write_text("image,split\nmissing.nii.gz,train\n")
    with pytest.raises(DataError, match=r"bad.csv: row 2: image: .*missing.nii.gz not found"):
        load_enhance_data(tmp_path / "bad.csv")


def test_raw_kspace_npy_and_h5(tmp_path: Path) -> None:
    k = (np.random.default_rng(0).normal(size=(2, 16, 12)) * (1 + 1j)).astype(np.complex64)
    np.save(tmp_path / "a.npy", k)
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f["kspace"] = k
        f["mask"] = np.ones(12, dtype=np.uint8)
    data = load_enhance_data(tmp_path)
    assert data.kind == "kspace" and len(data.train) == 2 and data.max_plane == [16, 12]
    got, mask = read_kspace(tmp_path / "b.h5")
    np.testing.assert_array_equal(got, k)
    assert mask is not None and mask.shape == (16, 12)


def test_kspace_file_without_the_array(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["image"] = np.zeros((4, 4))
    with pytest.raises(DataError, match=r"c.h5: kspace: no 'kspace' array \(found image\)"):
        read_kspace(tmp_path / "c.h5")
    np.save(tmp_path / "real.npy", np.zeros((4, 4)))
    with pytest.raises(DataError, match=r"real.npy: kspace: expected complex k-space, found dtype float64"):
        read_kspace(tmp_path / "real.npy")


def test_complex_and_nan_images_are_refused(tmp_path: Path) -> None:
    from medsight.tasks.enhance.data import image_stack

    with pytest.raises(
        DataError, match=r"x.nii.gz: image: expected a real \(magnitude\) image, found complex"
    ):
        image_stack(np.ones((1, 4, 4), dtype=np.complex64), "x.nii.gz")
    arr = np.ones((1, 4, 4), dtype=np.float32)
    arr[0, 1, 1] = np.nan
    with pytest.raises(DataError, match=r"y.png: image: 1 NaN/Inf value"):
        image_stack(arr, "y.png")


def test_bad_degradation_names_the_accepted_forms() -> None:
    with pytest.raises(ConfigError, match=r"cannot read 'kspace:four'.*kspace:<N>x.*lowdose-ct:.*sr:<N>x"):
        parse_degradation("kspace:four")


def test_too_few_lines_for_the_acceleration_names_the_file(tmp_path: Path) -> None:
    from medsight.tasks.enhance import degrade

    _volume(tmp_path / "small.nii.gz", 0, (8, 8, 2))
    with pytest.raises(DataError, match=r"small.nii.gz: image: 8 phase-encoding lines are too few for 8x"):
        degrade(tmp_path / "small.nii.gz", tmp_path / "out.npy", "kspace:8x")


def test_lowdose_ct_is_degraded_at_each_files_own_pixel_size(tmp_path: Path) -> None:
    """``spacing=image``: the pipeline reads the pixel size from each file's header and degrades with it,
    the same as giving that size explicitly."""
    from types import SimpleNamespace

    from medsight.tasks.enhance.pipeline import case_samples, case_slices

    yy, xx = np.mgrid[:32, :32]
    hu = np.where((yy - 16) ** 2 + (xx - 16) ** 2 < 144, 40.0, -1000.0).astype(np.float32)[..., None]
    for name, mm in (("fine", 0.5), ("coarse", 2.0)):
        write_image(Image.from_array(hu[None], spacing=(mm, mm, 3.0)), tmp_path / "train" / f"{name}.nii.gz")
    plan = SimpleNamespace(
        degradation="lowdose-ct:0.25,angles=30,input=hu",
        degradation_seed=0,
        slices_per_case=1,
        slice_size=[32, 32],
        min_foreground=0.0,
    )
    for case in load_enhance_data(tmp_path).train:
        mm = 0.5 if "fine" in str(case.image) else 2.0
        cs = case_slices(case, plan, fit=False)
        assert cs.pixel_mm == pytest.approx(mm)
        explicit = SimpleNamespace(**{**vars(plan), "degradation": f"{plan.degradation},spacing={mm}"})
        np.testing.assert_array_equal(
            case_samples(cs, plan)[0].degraded, case_samples(cs, explicit)[0].degraded
        )


def test_lowdose_ct_training_slices_are_degraded_whole_then_cropped(tmp_path: Path) -> None:
    """A low-dose CT's noise depends on the whole body each ray crosses: a training slice cropped to the
    plan's slice size keeps the noise of the whole slice, not the smaller noise of a cropped body."""
    from medsight.tasks.enhance.pipeline import TrainingBatches, fitted_samples, training_slices
    from medsight.tasks.enhance.planning import EnhancePlan
    from medsight.tasks.enhance.slices import degrade_slice, fit_plane

    yy, xx = np.mgrid[:128, :128]
    hu = np.where((yy - 64) ** 2 + (xx - 64) ** 2 < 60**2, 40.0, -1000.0).astype(np.float32)
    ct = Image.from_array(hu[None, ..., None], spacing=(1.0, 1.0, 3.0))
    write_image(ct, tmp_path / "train" / "ct.nii.gz")
    plan = EnhancePlan.model_validate(
        dict(
            dim=2,
            in_channels=1,
            class_names=["image"],
            normalization=[{"scheme": "none"}],
            network="residual_unet",
            batch_size=1,
            slice_size=[32, 32],
            intensity="ct",
            augment=False,
            slices_per_case=1,
            min_foreground=0.0,
            degradation="lowdose-ct:0.25,i0=20000,angles=90,input=hu",
            degradation_settings={"kind": "lowdose-ct"},
        )
    )
    assert plan.degrades_whole_slices
    case = load_enhance_data(tmp_path).train[0]
    cs = training_slices(case, plan)
    assert cs.clean.shape[-2:] == (128, 128)

    def noise(degraded: np.ndarray, reference: np.ndarray) -> float:
        return float(np.std(degraded - reference))

    batch = next(iter(TrainingBatches([cs], plan, seed=0)))
    assert batch["image"].shape[-2:] == (32, 32)
    trained = noise(batch["image"][0, 0].numpy(), batch["target"][0, 0].numpy()) * 1000.0  # HU
    val = fitted_samples(case, plan)[0]
    assert val.degraded.shape == (32, 32)
    cropped_first = degrade_slice(fit_plane(hu, [32, 32]), plan, np.random.default_rng(0), 1.0)
    assert trained == pytest.approx(noise(val.degraded, val.reference), rel=0.25)
    assert trained > 1.5 * noise(cropped_first.degraded, cropped_first.reference)
