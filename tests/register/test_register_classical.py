"""The classical methods and the one-pair API (medsight.register): known answers in physical space, the
files OUT/ holds, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from phantoms import max_point_error, sample

import medsight
from medsight.errors import ConfigError, DataError
from medsight.io import Image, read_image, write_image
from medsight.tasks.register.classical import affine

SIZE_3D, SPACING_3D = (40, 40, 40), (1.5, 1.5, 1.5)


def as_image(img: sitk.Image) -> Image:
    dim = img.GetDimension()
    arr = np.transpose(sitk.GetArrayFromImage(img))[None]
    return Image(arr, img.GetSpacing(), img.GetOrigin(), np.reshape(img.GetDirection(), (dim, dim)))


def voxel_error(estimated: sitk.Transform, true: sitk.Transform, fixed: sitk.Image) -> float:
    return max_point_error(estimated, true, fixed) / min(fixed.GetSpacing())


def test_affine_recovers_a_pure_translation_to_under_half_a_voxel() -> None:
    fixed = sample(SIZE_3D, SPACING_3D)
    true = sitk.TranslationTransform(3, (3.3, -2.1, 1.7))
    moving = sample(SIZE_3D, SPACING_3D, transform=true.GetInverse())  # moving(q) = g(q - t)
    assert voxel_error(affine(fixed, moving), true, fixed) < 0.5


def test_affine_recovers_a_pure_rotation_to_under_half_a_voxel() -> None:
    fixed = sample(SIZE_3D, SPACING_3D)
    true = sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.05, -0.08, 0.12)  # up to 7 degrees
    moving = sample(SIZE_3D, SPACING_3D, transform=true.GetInverse())
    assert voxel_error(affine(fixed, moving), true, fixed) < 0.5


def test_a_flipped_rotated_header_of_the_same_volume_registers_in_physical_space(tmp_path: Path) -> None:
    # the same object sampled on a grid with other spacing, flipped axes and a rotated direction: the
    # answer is the identity in physical space, whatever the voxel arrays look like
    fixed = sample((36, 36, 36), (1.6, 1.6, 1.6))
    rotation = np.asarray(sitk.Euler3DTransform((0, 0, 0), 0.2, -0.1, 0.3).GetMatrix()).reshape(3, 3)
    flip = np.diag([-1.0, 1.0, -1.0])
    moving = sample((44, 40, 38), (1.3, 1.5, 1.4), direction=rotation @ flip)
    result = medsight.register(
        as_image(fixed), as_image(moving), "affine", output=tmp_path / "out", spacing=None
    )
    assert voxel_error(result.transform, sitk.Transform(3, sitk.sitkIdentity), fixed) < 0.5
    warped = read_image(tmp_path / "out" / "warped.nii.gz").array[0]
    before = np.abs(np.transpose(sitk.GetArrayFromImage(fixed)) - warped)
    assert float(before[8:-8, 8:-8, 8:-8].mean()) < 0.02  # the warped image is the fixed one


@pytest.fixture(scope="module")
def deformed_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    """A 2D phantom, the same under a smooth deformation, and label maps of both (files)."""
    folder = tmp_path_factory.mktemp("pair")
    fixed = sample((48, 48), (1.0, 1.0))
    bend = sitk.BSplineTransformInitializer(fixed, [2, 2], 3)
    bend.SetParameters(np.random.default_rng(0).normal(0, 1.5, len(bend.GetParameters())).tolist())
    moving = sample((48, 48), (1.0, 1.0), transform=bend)
    paths = []
    for name, img in (("fixed", fixed), ("moving", moving)):
        image = as_image(img)
        paths.append(write_image(image, folder / f"{name}.nii.gz"))
        labels = (image.array > 0.3).astype(np.uint8) + (image.array > 0.6)
        paths.append(write_image(image.with_array(labels), folder / f"{name}_labels.nii.gz"))
    return paths[0], paths[1], paths[2], paths[3]


@pytest.mark.parametrize("method", ["affine", "bspline", "demons"])
def test_every_method_writes_the_outputs_and_the_field_reproduces_the_warped_image(
    method: str, deformed_pair: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    fixed, fixed_labels, moving, moving_labels = deformed_pair
    out = tmp_path / method
    result = medsight.register(
        fixed, moving, method, output=out, moving_labels=moving_labels, fixed_labels=fixed_labels
    )
    names = {p.name for p in out.iterdir()}
    assert names == {
        "warped.nii.gz", "warped_labels.nii.gz", "field.nii.gz", "affine.tfm", "jacobian.nii.gz",
        "checkerboard.png", "metrics.json",
    }  # fmt: skip
    # SimpleITK's DisplacementFieldTransform of the written field gives the written warped image
    field = sitk.Cast(sitk.ReadImage(str(out / "field.nii.gz")), sitk.sitkVectorFloat64)
    f_img, m_img = sitk.ReadImage(str(fixed)), sitk.ReadImage(str(moving), sitk.sitkFloat32)
    again = sitk.Resample(m_img, f_img, sitk.DisplacementFieldTransform(field), sitk.sitkLinear, 0.0)
    warped = sitk.ReadImage(str(out / "warped.nii.gz"))
    np.testing.assert_allclose(sitk.GetArrayFromImage(again), sitk.GetArrayFromImage(warped), atol=1e-3)
    assert sitk.ReadTransform(str(out / "affine.tfm")).GetDimension() == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == method and metrics["folding_pct"] < 0.5 and metrics["seconds"] > 0
    before = medsight.register(
        fixed, moving, "affine", moving_labels=moving_labels, fixed_labels=fixed_labels
    )
    if method != "affine":  # deformable methods beat the affine floor on a deformation
        assert metrics["dice_mean"] > before.metrics["dice_mean"]
    assert result.jacobian.shape == (48, 48)


def test_an_existing_output_is_not_overwritten(
    deformed_pair: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    fixed, _, moving, _ = deformed_pair
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not empty"):
        medsight.register(fixed, moving, "affine", output=tmp_path / "out")
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep"


def _write(tmp_path: Path, name: str, arr: np.ndarray, **geometry: object) -> Path:
    return write_image(Image.from_array(arr[None], **geometry), tmp_path / name)  # type: ignore[arg-type]


def test_bad_input_is_a_data_error_naming_file_and_field(tmp_path: Path) -> None:
    good = as_image(sample((32, 32), (1.0, 1.0))).array[0]
    fixed = _write(tmp_path, "fixed.nii.gz", good)
    volume = _write(tmp_path, "vol.nii.gz", np.stack([good] * 4, axis=-1))
    with pytest.raises(DataError, match=r"vol\.nii\.gz: moving image: dimensionality 3D does not match"):
        medsight.register(fixed, volume, "affine")
    flat = _write(tmp_path, "flat.nii.gz", np.full((32, 32), 7.0, np.float32))
    with pytest.raises(DataError, match=r"flat\.nii\.gz: moving image: the volume is empty or constant"):
        medsight.register(fixed, flat, "affine")
    nan = good.copy()
    nan[3, 3] = np.nan
    with pytest.raises(DataError, match=r"nan\.nii\.gz: moving image: 1 NaN/Inf"):
        medsight.register(fixed, _write(tmp_path, "nan.nii.gz", nan), "affine")
    small = _write(tmp_path, "small_labels.nii.gz", np.zeros((30, 32), np.uint8))
    with pytest.raises(
        DataError, match=r"small_labels\.nii\.gz: moving labels: shape \(30, 32\) does not match"
    ):
        medsight.register(fixed, fixed, "affine", moving_labels=small)
    moved = _write(tmp_path, "moved_labels.nii.gz", np.zeros((32, 32), np.uint8), origin=(5.0, 0.0))
    with pytest.raises(DataError, match=r"moved_labels\.nii\.gz: fixed labels: origin"):
        medsight.register(fixed, fixed, "affine", fixed_labels=moved)
    with pytest.raises(ConfigError, match="--method"):
        medsight.register(fixed, fixed, "syn")
    with pytest.raises(ConfigError, match="--run"):
        medsight.register(fixed, fixed, "learned")


def test_fields_of_view_that_do_not_overlap_warn_with_the_overlap_in_mm(tmp_path: Path) -> None:
    good = as_image(sample((32, 32), (1.0, 1.0))).array[0]
    fixed = _write(tmp_path, "fixed.nii.gz", good)
    far = _write(tmp_path, "far.nii.gz", good, origin=(200.0, 0.0))
    with pytest.warns(UserWarning, match=r"does not overlap .* \(overlap x 0\.0 mm, y 31\.0 mm\)"):
        result = medsight.register(fixed, far, "affine")
    assert result.metrics["overlap_mm_x"] == 0.0
    # the affine step starts from the centres of mass, so the far image is still found
    assert abs(result.transform.TransformPoint((0.0, 0.0))[0] - 200.0) < 1.0


def test_the_register_verb_writes_out_and_prints_the_metrics(
    deformed_pair: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from medsight.cli.main import app

    fixed, fixed_labels, moving, moving_labels = deformed_pair
    args = ["register", "--fixed", str(fixed), "--moving", str(moving), "--output", str(tmp_path / "out")]
    args += ["--method", "demons", "--moving-labels", str(moving_labels), "--fixed-labels", str(fixed_labels)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["method"] == "demons" and 0 < shown["dice_mean"] <= 1
    assert (tmp_path / "out" / "warped_labels.nii.gz").is_file()
