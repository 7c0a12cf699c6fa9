"""Known-answer tests of the registration metrics (medsight.metrics.registration)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medsight.errors import DataError
from medsight.metrics.registration import (
    field_from_itk,
    field_metrics,
    field_tre,
    folding_percent,
    jacobian_determinant,
    label_overlap,
    sdlogj,
    tre,
)


def affine_field(matrix: np.ndarray, shape: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    """u(x) = (A - I) x in mm on a grid of the given spacing (array axes)."""
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij")
    x = np.stack(grids)
    return np.einsum("ij,j...->i...", matrix - np.eye(len(shape)), x)


@pytest.mark.parametrize("shape", [(9, 11), (6, 7, 8)])
def test_identity_has_jacobian_one_everywhere(shape: tuple[int, ...]) -> None:
    jac = jacobian_determinant(np.zeros((len(shape), *shape)), [0.7] * len(shape))
    np.testing.assert_allclose(jac, 1.0)
    assert folding_percent(jac) == 0.0 and sdlogj(jac) == 0.0


@pytest.mark.parametrize("dim", [2, 3])
def test_jacobian_of_an_affine_map_is_its_determinant(dim: int) -> None:
    rng = np.random.default_rng(dim)
    a = np.eye(dim) + rng.uniform(-0.3, 0.3, (dim, dim))
    spacing = tuple(rng.uniform(0.5, 2.0, dim))
    shape = (7, 8, 9)[:dim]
    jac = jacobian_determinant(affine_field(a, shape, spacing), spacing)
    np.testing.assert_allclose(jac, np.linalg.det(a), rtol=1e-10)


def test_sdlogj_of_a_hand_made_field_matches_the_formula() -> None:
    # left half stretched by 1.2 along axis 1, right half compressed to 0.8: det J is 1.2 and 0.8 away
    # from the seam; in the interior SDlogJ = std of {log 1.2, log 0.8} over equal halves
    n = 40
    x = np.arange(n, dtype=float)
    slope = np.where(x < n / 2, 0.2, -0.2)
    ux = np.cumsum(slope)  # d ux / dx = slope (up to the seam)
    u = np.zeros((2, 6, n))
    u[1] = ux[None, :]
    jac = jacobian_determinant(u)
    mask = np.zeros((6, n), bool)
    mask[:, 2:18] = True
    mask[:, 22:38] = True
    np.testing.assert_allclose(jac[mask], np.broadcast_to(np.where(x < n / 2, 1.2, 0.8), (6, n))[mask])
    expected = abs(np.log(1.2) - np.log(0.8)) / 2
    assert sdlogj(jac, mask) == pytest.approx(expected, rel=1e-12)


def test_folding_counts_non_positive_determinants() -> None:
    jac = np.array([[1.0, 0.0], [-0.5, 2.0]])
    assert folding_percent(jac) == 50.0
    assert field_metrics(np.zeros((2, 4, 4)))["folding_pct"] == 0.0


def test_tre_is_the_euclidean_distance() -> None:
    out = tre(np.array([[0.0, 0.0], [3.0, 4.0]]), np.zeros((2, 2)))
    assert out["tre_mean"] == 2.5 and out["tre_max"] == 5.0
    u = np.zeros((3, 4, 4, 4))
    truth = np.zeros_like(u)
    truth[0] = 2.0
    assert field_tre(u, truth)["tre_mean"] == 2.0
    with pytest.raises(DataError, match="true field"):
        field_tre(u, truth[:2])


def test_label_overlap_dice_and_hd95() -> None:
    fixed = np.zeros((20, 20), np.int16)
    fixed[5:15, 5:15] = 1
    warped = np.roll(fixed, 2, axis=0)
    rows = label_overlap(warped, fixed, [1], spacing=(1.0, 1.0))
    assert rows[0]["dice"] == pytest.approx(2 * 80 / 200)
    assert rows[0]["hd95"] == pytest.approx(2.0)


def test_field_from_itk_gives_the_affine_determinant_with_a_rotated_header() -> None:
    rng = np.random.default_rng(0)
    a = np.eye(3) + rng.uniform(-0.2, 0.2, (3, 3))
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(a.ravel().tolist())
    ref = sitk.Image([8, 9, 10], sitk.sitkFloat32)
    ref.SetSpacing((0.8, 1.1, 1.7))
    rot = sitk.VersorTransform((0.3, -0.5, 0.8), 0.7).GetMatrix()
    ref.SetDirection(rot)
    field = sitk.TransformToDisplacementField(
        transform,
        sitk.sitkVectorFloat64,
        ref.GetSize(),
        ref.GetOrigin(),
        ref.GetSpacing(),
        ref.GetDirection(),
    )
    u, spacing = field_from_itk(field)
    ours = jacobian_determinant(u, spacing)
    np.testing.assert_allclose(ours, np.linalg.det(a), rtol=1e-8)  # ITK's own filter ignores direction
