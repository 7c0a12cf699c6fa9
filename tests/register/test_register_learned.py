"""The learned method's pieces: the torch-free integration and field conversion agree with MONAI's
DVF2DDF and Warp, random deformations have the size asked, and the plan's choices."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from phantoms import sample

from medsight.tasks.register.deform import deform, random_field
from medsight.tasks.register.warping import field_image, integrate


def smooth_field(shape: tuple[int, ...], amplitude: float, seed: int = 0) -> np.ndarray:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    u = np.stack([ndimage.gaussian_filter(rng.normal(size=shape), 4.0) for _ in shape])
    return u / np.abs(u).max() * amplitude


@pytest.mark.parametrize("shape", [(24, 20), (12, 14, 10)])
def test_numpy_scaling_and_squaring_matches_monai_dvf2ddf(shape: tuple[int, ...]) -> None:
    from monai.networks.blocks import DVF2DDF

    v = smooth_field(shape, 3.0)
    ours = integrate(v, 7)
    theirs = DVF2DDF(num_steps=7, mode="bilinear", padding_mode="zeros")(torch.from_numpy(v)[None].float())
    np.testing.assert_allclose(ours, theirs[0].double().numpy(), atol=1e-4)


@pytest.mark.parametrize("dim", [2, 3])
def test_a_voxel_field_as_an_itk_transform_warps_like_monai(dim: int) -> None:
    from monai.networks.blocks import Warp

    shape = (20, 22, 18)[:dim] if dim == 3 else (30, 26)
    grid = sample(tuple(reversed(shape)), (1.5, 1.2, 0.9)[:dim],
                  direction=np.asarray(sitk.VersorTransform((0.2, 0.5, 0.1), 0.6).GetMatrix()).reshape(3, 3)
                  if dim == 3 else np.array([[0.0, -1.0], [1.0, 0.0]]))  # fmt: skip
    arr = sitk.GetArrayFromImage(grid)
    u = smooth_field(shape, 2.0, seed=dim)
    monai = Warp(mode="bilinear", padding_mode="zeros")(
        torch.from_numpy(arr)[None, None].float(), torch.from_numpy(u)[None].float()
    )[0, 0].numpy()
    transform = sitk.DisplacementFieldTransform(field_image(u, grid))
    itk = sitk.GetArrayFromImage(sitk.Resample(grid, grid, transform, sitk.sitkLinear, 0.0))
    inner = tuple(slice(4, -4) for _ in shape)
    np.testing.assert_allclose(itk[inner], monai[inner], atol=1e-4)


def test_random_deformations_have_the_size_asked_and_a_true_inverse() -> None:
    image = sample((40, 40), (1.0, 1.0))
    field = random_field(image, 6.0, 20.0, np.random.default_rng(1))
    peak = np.linalg.norm(sitk.GetArrayFromImage(field), axis=-1).max()
    assert 3.0 - 1e-6 <= peak <= 6.0 + 1e-6
    known = deform(image, None, field)
    # moving(p) = image(p + field(p)); the truth maps fixed points to moving points: moving(T(p)) = image(p)
    back = sitk.Resample(known.moving, image, sitk.DisplacementFieldTransform(sitk.Image(known.truth)))
    inner = (slice(8, -8), slice(8, -8))
    err = np.abs(sitk.GetArrayFromImage(back) - sitk.GetArrayFromImage(image))[inner]
    before = np.abs(sitk.GetArrayFromImage(known.moving) - sitk.GetArrayFromImage(image))[inner]
    assert err.mean() < 0.1 * before.mean()


def test_plan_picks_working_spacing_and_grid_with_reasons(tmp_path) -> None:  # noqa: ANN001
    from medsight.config import load_config
    from medsight.task_registry import get_task

    family = get_task("register")
    example = family.example(tmp_path / "data")
    config = load_config(None, task="register", data={"dataset": str(example.dataset)})
    data = family.load(example.dataset, config)
    plan = family.plan(data, config, measure=False)
    assert plan.dim == 2 and plan.grid_size == [48, 48] and plan.spacing == 1.0
    assert "first training subject" in plan.reasons["atlas"] and plan.atlas_labels
    assert plan.network == "voxelmorph_unet" and plan.integration_steps == 7
