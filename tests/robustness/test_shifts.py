"""Natural shifts: graded, seeded, in [0, 1], and geometric ones move dense targets with the image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsight.errors import ConfigError
from medsight.robustness.shifts import SEVERITIES, SHIFT_NAMES, apply_shift, move_target, parse_shifts


def textured(channels: int = 3, size: int = 48) -> torch.Tensor:
    """A smooth disc with stripes, intensities in [0.1, 0.9]: every shift changes it visibly."""
    yy, xx = np.mgrid[:size, :size] / size
    disc = ((yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.16).astype(float)
    stripes = 0.5 + 0.5 * np.sin(xx * 40)
    image = 0.1 + 0.8 * (0.6 * disc + 0.4 * stripes * disc)
    return torch.tensor(np.stack([image * (1 - 0.2 * c) for c in range(channels)])[None], dtype=torch.float32)


@pytest.mark.parametrize("name", SHIFT_NAMES)
def test_each_shift_grows_with_severity_and_stays_in_range(name: str) -> None:
    u = textured()
    distances = []
    for severity in SEVERITIES:
        shifted = apply_shift(name, u, severity, torch.Generator().manual_seed(0))
        assert shifted.shape == u.shape and shifted.dtype == torch.float32
        assert float(shifted.min()) >= 0 and float(shifted.max()) <= 1
        distances.append(float((shifted - u).abs().mean()))
    assert distances[0] > 1e-3, f"{name} at severity 1 left the image unchanged"
    assert distances[0] < distances[1] < distances[2], f"{name}: {distances}"


def test_shifts_are_seeded_and_work_on_grey_and_3d_images() -> None:
    grey = textured(channels=1)
    first = apply_shift("noise", grey, 2, torch.Generator().manual_seed(5))
    again = apply_shift("noise", grey, 2, torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    assert apply_shift("colour", grey, 3).mean() > grey.mean()  # brightness for a grey image
    volume = textured(channels=1, size=16)[:, :, None].repeat(1, 1, 8, 1, 1)
    for name in ("scale", "resolution", "blur", "bias-field", "gamma"):
        assert apply_shift(name, volume, 1).shape == volume.shape
    with pytest.raises(ConfigError, match="jpeg.*2D"):
        apply_shift("jpeg", volume, 1)


def test_scale_zooms_a_label_map_with_its_image_and_leaves_class_targets() -> None:
    labels = torch.zeros(1, 40, 40, dtype=torch.long)
    labels[0, 15:25, 15:25] = 1  # a 10-pixel square at the centre
    moved = move_target("scale", labels, (40, 40), 2)  # 1.5x
    assert moved.dtype == torch.long and set(moved.unique().tolist()) == {0, 1}
    side = int(moved[0, 20].sum())
    assert side == pytest.approx(15, abs=1)
    assert torch.equal(move_target("gamma", labels, (40, 40), 2), labels)  # intensity shifts: unchanged
    classes = torch.tensor([1, 0])
    assert torch.equal(move_target("scale", classes, (40, 40), 2), classes)


def test_shift_lists_parse_and_name_the_known_ones() -> None:
    assert parse_shifts("all") == list(SHIFT_NAMES)
    assert parse_shifts("scale, gamma") == ["scale", "gamma"]
    with pytest.raises(ConfigError, match="known: all, scale"):
        parse_shifts("scale,sepia")
