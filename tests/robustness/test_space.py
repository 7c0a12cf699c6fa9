"""InputSpace: normalised inputs <-> unit space, epsilon parsing, gradients through the normalisation."""

from __future__ import annotations

import pytest
import torch

from medsight.errors import ConfigError
from medsight.planning.plan import ChannelNorm
from medsight.robustness import InputSpace, parse_eps

CT = ChannelNorm(scheme="ct", clip_low=-1000.0, clip_high=1000.0, mean=40.0, std=300.0)
RGB = ChannelNorm(scheme="rgb", mean=0.45, std=0.22)


def _raw(shape: tuple[int, ...] = (3, 1, 8, 8), low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return low + (high - low) * torch.rand(shape, generator=g, dtype=torch.float64)


def _zscore(raw: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    m = torch.ones_like(raw) if mask is None else mask.to(raw.dtype)
    n = m.sum(dim=(1, 2, 3), keepdim=True)
    mean = (raw * m).sum(dim=(1, 2, 3), keepdim=True) / n
    std = ((((raw - mean) * m) ** 2).sum(dim=(1, 2, 3), keepdim=True) / n).sqrt()
    return (raw - mean) / std * m


def test_rgb_round_trip_and_unit_values() -> None:
    raw = torch.randint(0, 256, (2, 1, 6, 6)).double()
    x = (raw / 255 - RGB.mean) / RGB.std
    space = InputSpace([RGB])
    u, state = space.to_unit(x)
    assert torch.allclose(u.double(), raw / 255, atol=1e-6)
    assert torch.allclose(space.from_unit(u, state).double(), x, atol=1e-5)


def test_ct_unit_is_the_clip_window_and_round_trips() -> None:
    hu = _raw(low=-1500.0, high=1500.0)
    x = (hu.clamp(CT.clip_low, CT.clip_high) - CT.mean) / CT.std
    space = InputSpace([CT])
    u, state = space.to_unit(x)
    expected = (hu.clamp(-1000, 1000) + 1000) / 2000
    assert torch.allclose(u.double(), expected, atol=1e-6)
    assert u.min() == 0 and u.max() == 1
    assert torch.allclose(space.from_unit(u, state).double(), x, atol=1e-5)


@pytest.mark.parametrize("use_mask", [False, True])
def test_zscore_round_trip(use_mask: bool) -> None:
    raw = _raw()
    mask = None
    if use_mask:
        mask = torch.zeros_like(raw, dtype=torch.bool)
        mask[..., 2:6, 1:7] = True
    x = _zscore(raw, mask)
    space = InputSpace([ChannelNorm(scheme="zscore", use_mask=use_mask)])
    u, state = space.to_unit(x)
    assert u.min() >= 0 and u.max() <= 1
    assert torch.allclose(space.from_unit(u, state).double(), x, atol=1e-5)


def test_none_round_trip_two_channels() -> None:
    x = torch.cat([_raw(low=-3.0, high=5.0), _raw(low=100.0, high=101.0)], dim=1)
    space = InputSpace([ChannelNorm(scheme="none"), ChannelNorm(scheme="none")])
    u, state = space.to_unit(x)
    assert torch.allclose(u.flatten(2).amin(2), torch.zeros(3, 2))
    assert torch.allclose(u.flatten(2).amax(2), torch.ones(3, 2))
    assert torch.allclose(space.from_unit(u, state).double(), x, atol=1e-4)


def test_wrong_channel_count_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="expected \\(batch, 1 channels"):
        InputSpace([RGB]).to_unit(torch.zeros(1, 3, 4, 4))


def test_ct_without_window_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="clip_low and clip_high"):
        InputSpace([ChannelNorm(scheme="ct", mean=0.0, std=1.0)])


@pytest.mark.parametrize(
    ("value", "expected"), [(0.03, (0.03, False)), ("2/255", (2 / 255, False)), ("10HU", (10.0, True))]
)
def test_parse_eps(value: str | float, expected: tuple[float, bool]) -> None:
    amount, hu = parse_eps(value)
    assert amount == pytest.approx(expected[0]) and hu == expected[1]


@pytest.mark.parametrize("value", ["abc", "-1", "1/0", "2/255/3"])
def test_parse_eps_rejects_bad_values(value: str) -> None:
    with pytest.raises(ConfigError, match="eps"):
        parse_eps(value)


def test_eps_in_hounsfield_units_on_a_ct_space() -> None:
    space = InputSpace([CT])
    assert space.eps("10HU") == pytest.approx(10 / 2000)
    assert space.eps(" 20 hu") == pytest.approx(20 / 2000)
    assert space.eps("4/255") == pytest.approx(4 / 255)


def test_eps_in_hounsfield_units_needs_a_ct_space() -> None:
    with pytest.raises(ConfigError, match="Hounsfield units need a CT model.*'rgb'"):
        InputSpace([RGB]).eps("10HU")


@pytest.mark.parametrize(
    "norm",
    [
        RGB,
        CT,
        ChannelNorm(scheme="zscore"),
        ChannelNorm(scheme="zscore", use_mask=True),
        ChannelNorm(scheme="none"),
    ],
    ids=["rgb", "ct", "zscore", "zscore-masked", "none"],
)
def test_gradients_flow_through_from_unit(norm: ChannelNorm) -> None:
    raw = _raw((2, 1, 5, 5))
    raw[..., 0, :] = 0  # a background row for the masked z-score
    space = InputSpace([norm])
    x = raw if norm.scheme == "none" else _zscore(raw, raw != 0) if norm.use_mask else raw
    _, state = space.to_unit(x)
    u = _raw((2, 1, 5, 5)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: space.from_unit(v, state), (u,))
    (grad,) = torch.autograd.grad(space.from_unit(u, state).pow(2).sum(), u)
    assert grad.abs().sum() > 0
