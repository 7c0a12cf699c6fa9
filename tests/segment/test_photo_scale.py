"""Photographs without a spacing are brought to the training scale: a fundus image from a camera with
1.6x the resolution reaches the network at the size the training images had."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medsight.config import load_config
from medsight.io import Image
from medsight.planning.plan import ChannelNorm, PhotoScale
from medsight.task_registry import get_task
from medsight.tasks.segment.planning import Plan
from medsight.transforms.photo_scale import choose_method, fov_diameter, scale_factor
from medsight.transforms.segmentation import preprocess, resize


def fundus(size: int = 120, radius: float = 50, width: int | None = None) -> np.ndarray:
    """(3, size, width) an RGB disc on black with a darker vessel-like stripe."""
    width = width or size
    yy, xx = np.mgrid[:size, :width]
    disc = (yy - size / 2) ** 2 + (xx - width / 2) ** 2 < radius**2
    image = np.where(disc, 150.0, 2.0) - 60.0 * disc * (np.abs(xx - width / 2 + 10) < 3)
    return np.stack([image, image * 0.6, image * 0.3]).astype(np.float32)


def test_field_of_view_diameter_of_discs_and_of_images_without_one() -> None:
    assert fov_diameter(fundus(radius=50)) == pytest.approx(100, abs=2)
    assert fov_diameter(fundus(size=100, radius=60, width=140)) == pytest.approx(120, abs=2)  # cut top/bottom
    flat = np.full((3, 64, 64), 120.0, dtype=np.float32)
    assert fov_diameter(flat) is None  # no dark border
    speck = np.zeros((3, 64, 64), dtype=np.float32)
    speck[:, 30:34, 30:34] = 200
    assert fov_diameter(speck) is None  # too small to be a field of view
    assert fov_diameter(np.zeros((3, 8, 8), dtype=np.float32)) is None


def test_the_field_of_view_is_found_when_another_camera_lifts_the_black_border() -> None:
    image = fundus(radius=50)
    flatter = image.mean() + (image - image.mean()) * 0.6  # lower contrast: a grey border
    noise = np.random.default_rng(0).normal(0, 3, image.shape)
    brighter = 255 * (image / 255) ** 0.6 + noise  # gamma and sensor noise
    for shifted in (flatter, brighter):
        assert fov_diameter(shifted.astype(np.float32)) == pytest.approx(100, abs=2)


def test_the_method_follows_the_training_images() -> None:
    method, reference, why = choose_method([fundus(radius=r) for r in (48, 50, 52)])
    assert (method, reference) == ("fov-diameter", pytest.approx(100, abs=2)) and "field of view" in why
    photos = [np.full((3, h, 80), 100.0, dtype=np.float32) for h in (60, 100, 120)]
    assert choose_method(photos)[:2] == ("image-size", 100.0)


def test_a_larger_camera_image_reaches_the_network_at_the_training_size(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scale = PhotoScale(method="fov-diameter", reference_px=100)
    small, large = fundus(120, 50), resize(fundus(120, 50), (192, 192))  # 1.6x the pixels
    assert scale_factor(small, scale)[0] == pytest.approx(1.0, abs=0.03)
    assert scale_factor(large, scale)[0] == pytest.approx(1 / 1.6, abs=0.03)

    plan = Plan(
        task="segment",
        dim=2,
        in_channels=3,
        class_names=["background", "vessel"],
        label_values=[0, 1],
        normalization=[ChannelNorm(scheme="rgb", mean=0.3, std=0.2)] * 3,
        target_spacing=[1.0, 1.0],
        patch_size=[64, 64],
        network="dynunet",
        batch_size=1,
        photo_scale=scale,
    )
    a = preprocess(Image.from_array(small), None, plan, "small")
    with caplog.at_level("INFO", logger="medsight"):
        b = preprocess(Image.from_array(large), None, plan, "large")
        preprocess(Image.from_array(large), None, plan, "large", log_scale=False)  # a second look: quiet
    said = [r.getMessage() for r in caplog.records if "training scale" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("large: fov-diameter 1") and "x0.6" in said[0]
    assert b.image.shape == pytest.approx(a.image.shape, abs=2) and b.scale == pytest.approx(
        1 / 1.6, abs=0.03
    )
    assert b.original_shape == (192, 192)  # predictions are restored to the large image's own grid


def test_the_segment_planner_measures_photographs(tmp_path: Path) -> None:
    from medsight.data import make_phantom_dataset

    data = make_phantom_dataset(tmp_path / "fundus", kind="fundus2d", n_train=4, n_test=1, seed=0, size=64)
    cfg = load_config(None, task="segment", data={"dataset": str(data)})
    family = get_task("segment")
    plan = family.plan(family.load(data, cfg), cfg, measure=False)
    assert plan.photo_scale is not None and plan.photo_scale.method == "fov-diameter"
    assert "field of view" in plan.reasons["photo_scale"]
    assert plan.camera_augment and "measured on DRIVE" in plan.reasons["camera_augment"]
    overrides = ["plan.photo_scale=null", "plan.camera_augment=false"]
    cfg_off = load_config(None, overrides, task="segment", data={"dataset": str(data)})
    off = family.plan(family.load(data, cfg_off), cfg_off, measure=False)
    assert off.photo_scale is None and not off.camera_augment


def test_augmentation_strength_and_another_cameras_look() -> None:
    from monai import transforms as T

    from medsight.transforms.segmentation import augmentation, augmentation_summary

    plan = Plan(
        task="segment",
        dim=2,
        in_channels=3,
        class_names=["background", "vessel"],
        label_values=[0, 1],
        normalization=[ChannelNorm(scheme="rgb", mean=0.3, std=0.2)] * 3,
        target_spacing=[1.0, 1.0],
        patch_size=[32, 32],
        network="dynunet",
        batch_size=1,
    )
    default = augmentation(plan).transforms
    camera = augmentation(plan.model_copy(update={"camera_augment": True})).transforms

    def channel_gains(transforms: list) -> list:
        return [t for t in transforms if isinstance(t, T.RandScaleIntensityd) and t.scaler.channel_wise]

    assert channel_gains(default) == [] and len(channel_gains(camera)) == 1
    assert len(camera) > len(default)
    strong = augmentation(plan.with_overrides({"augment": 2})).transforms
    assert strong[0].rand_affine.rand_affine_grid.scale_range[0] == pytest.approx(0.3)  # 2 x 0.15
    assert plan.with_overrides({"augment": False}).augment == 0
    assert "another camera" in augmentation_summary(plan.model_copy(update={"camera_augment": True}))
    assert augmentation_summary(plan.with_overrides({"augment": 0})) == "no augmentation"
