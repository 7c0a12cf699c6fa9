"""Preprocessing and its inverse keep geometry; regions and patches behave."""

from __future__ import annotations

import numpy as np
import torch

from medsight.io import Image
from medsight.planning.plan import ChannelNorm
from medsight.tasks.segment.planning import Plan
from medsight.tasks.segment.sampler import PatchDataset, crop_patch
from medsight.transforms.segmentation import (
    labels_to_regions,
    normalize,
    preprocess,
    regions_to_labels,
    restore,
)


def _plan(**kw) -> Plan:
    base = dict(
        dim=3,
        in_channels=1,
        class_names=["background", "a"],
        label_values=[0, 1],
        target_spacing=[2.0, 2.0, 2.0],
        normalization=[ChannelNorm(scheme="zscore", use_mask=True)],
        patch_size=[16, 16, 16],
        batch_size=2,
        augment=False,
    )
    base.update(kw)
    return Plan(**base)


def test_preprocess_then_restore_returns_original_grid() -> None:
    arr = np.zeros((1, 40, 30, 20), dtype=np.float32)
    arr[0, 5:35, 4:26, 2:18] = np.random.default_rng(0).normal(5, 2, (30, 22, 16))
    lab = np.zeros_like(arr, dtype=np.uint8)
    lab[0, 10:20, 10:20, 5:10] = 1
    image = Image.from_array(arr, spacing=(1.0, 1.0, 1.0), origin=(3.0, -2.0, 7.0))
    pre = preprocess(image, image.with_array(lab), _plan())
    assert pre.image.shape == (1, 15, 11, 8)  # cropped 30x22x16 at 1 mm -> 2 mm
    assert pre.label.shape == pre.image.shape and set(np.unique(pre.label)) == {0, 1}
    inside = pre.image[0][pre.image[0] != 0]
    assert abs(inside.mean()) < 0.2  # z-scored inside the mask (resampling smooths the noise)
    onehot = np.concatenate([1 - (pre.label > 0), pre.label > 0]).astype(np.float32)
    back = restore(onehot, pre)
    assert back.shape == (2, 40, 30, 20)
    restored = back.argmax(0)
    dice = 2 * (restored & lab[0]).sum() / (restored.sum() + lab[0].sum())
    assert dice > 0.8
    assert back[0, 0, 0, 0] == 1.0  # outside the crop: background


def test_ct_normalisation_clips_then_zscores() -> None:
    x = np.array([[[-2000.0, 0.0], [100.0, 3000.0]]], dtype=np.float32)
    out = normalize(x, [ChannelNorm(scheme="ct", clip_low=-1000, clip_high=1000, mean=0.0, std=500.0)])
    np.testing.assert_allclose(out[0], [[-2.0, 0.0], [0.2, 2.0]])


def test_regions_round_trip_brats_style() -> None:
    regions = {"whole tumour": [1, 2, 4], "tumour core": [1, 4], "enhancing": [4]}
    label = np.random.default_rng(1).choice([0, 1, 2, 4], size=(1, 8, 8, 8))
    masks = labels_to_regions(label, regions)
    assert masks.shape == (3, 8, 8, 8)
    np.testing.assert_array_equal(regions_to_labels(masks, regions), label[0])


def test_crop_patch_pads_at_borders() -> None:
    a = np.arange(25, dtype=np.float32).reshape(1, 5, 5)
    p = crop_patch(a, np.array([0, 0]), [4, 4])
    assert p.shape == (1, 4, 4)
    np.testing.assert_array_equal(p[0, 2:, 2:], a[0, :2, :2])
    assert (p[0, :2, :] == 0).all()


def test_patch_stream_oversamples_foreground() -> None:
    from medsight.transforms.segmentation import Preprocessed

    img = np.zeros((1, 64, 64), dtype=np.float32)
    lab = np.zeros((1, 64, 64), dtype=np.uint8)
    lab[0, 60:63, 60:63] = 1  # a tiny structure in a corner
    pre = Preprocessed("c", img, lab, (64, 64), (slice(0, 64), slice(0, 64)), (64, 64))
    plan = _plan(
        dim=2,
        target_spacing=[1.0, 1.0],
        patch_size=[16, 16],
        batch_size=8,
        normalization=[ChannelNorm(scheme="none")],
        foreground_oversample=1.0,
    )
    batch = next(iter(PatchDataset([pre], plan, seed=0)))
    assert batch["image"].shape == (8, 1, 16, 16) and batch["label"].shape == (8, 1, 16, 16)
    assert all(batch["label"][i].sum() > 0 for i in range(8))


def test_region_loss_is_binary_per_region() -> None:
    """Overlapping regions: the loss must treat each channel as its own sigmoid problem."""
    from medsight.tasks.segment.task import DiceBCELoss

    target = torch.zeros(1, 3, 4, 4)
    target[:, :, 1:3, 1:3] = 1  # the same voxels in all three nested regions
    perfect = (target * 2 - 1) * 20  # logits that agree with the target in every channel
    loss = DiceBCELoss(batch=True)
    assert float(loss(perfect, target)) < 1e-3
    assert float(loss(-perfect, target)) > 1.0
